import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { errorMessage, parseErrorBody, ServingApiError } from '../src/errors';
import { cellsToInsert, createCell, LOAD_EXT, updateCell } from '../src/notebook';
import { formatClock, formatTableMs } from '../src/history';
import {
  exampleFromOpenApi,
  exampleInput,
  formatResponse,
  OpenApiDoc,
  parseInput,
  pyLiteral,
  queryTargets,
  snippets
} from '../src/playground';
import { FAST_MS, MAX_BACKOFF_MS, refreshDelay, STEADY_MS } from '../src/poll';
import type { Endpoint } from '../src/types';

describe('parseErrorBody', () => {
  it('reads the Databricks error shape', () => {
    const err = parseErrorBody(
      400,
      'Bad Request',
      '{"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}'
    );
    assert.equal(err.status, 400);
    assert.equal(err.errorCode, 'INVALID_PARAMETER_VALUE');
    assert.equal(err.message, 'bad');
    assert.equal(errorMessage(err), 'INVALID_PARAMETER_VALUE: bad');
  });

  it("reads Jupyter's own error shape and tells a missing route from a missing endpoint", () => {
    const jupyter = parseErrorBody(404, 'Not Found', '{"message": "", "reason": "Not Found"}');
    assert.equal(jupyter.message, 'Not Found');
    assert.equal(jupyter.isMissingRoute, true);
    const missing = parseErrorBody(
      404,
      'Not Found',
      '{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no ep"}'
    );
    assert.equal(missing.isMissingRoute, false);
  });

  it('falls back to the status line for HTML or empty bodies', () => {
    assert.equal(parseErrorBody(502, 'Bad Gateway', '<html>proxy</html>').message, 'Bad Gateway');
    assert.equal(parseErrorBody(500, '', '').message, 'HTTP 500');
    assert.equal(errorMessage(parseErrorBody(500, '', 'plain text')), 'plain text');
  });

  it('formats non-API errors', () => {
    assert.equal(errorMessage(new Error('network down')), 'network down');
    assert.equal(errorMessage('x'), 'x');
    assert.ok(new ServingApiError(1, 'A', 'b') instanceof Error);
  });
});

describe('notebook cells', () => {
  const request = {
    name: 'ep',
    config: { served_entities: [{ entity_name: 'm', entity_version: '1' }] }
  };

  it('writes the create request as the %%serve create body', () => {
    const cell = createCell(request);
    assert.equal(cell.split('\n')[0], '%%serve create');
    assert.deepEqual(JSON.parse(cell.slice(cell.indexOf('\n') + 1)), request);
  });

  it('writes the config as the %%serve update body', () => {
    const cell = updateCell('ep', request.config);
    assert.equal(cell.split('\n')[0], '%%serve update ep');
    assert.deepEqual(JSON.parse(cell.slice(cell.indexOf('\n') + 1)), request.config);
  });

  it('adds %load_ext only when the notebook does not load the extension yet', () => {
    assert.deepEqual(cellsToInsert('M', ['import x']), [LOAD_EXT, 'M']);
    assert.deepEqual(cellsToInsert('M', ['import x', `${LOAD_EXT}\n`]), ['M']);
    assert.deepEqual(cellsToInsert('M', [`# ${LOAD_EXT}`]), [LOAD_EXT, 'M']);
  });
});

describe('playground', () => {
  it('accepts the Databricks scoring formats and re-serialises compactly', () => {
    assert.deepEqual(parseInput('{ "inputs": [1] }'), { ok: true, body: '{"inputs":[1]}' });
    assert.equal(parseInput(exampleInput()).ok, true);
  });

  it('explains bad input locally', () => {
    assert.match((parseInput('{') as { error: string }).error, /Not valid JSON/);
    assert.match((parseInput('[1]') as { error: string }).error, /JSON object/);
    assert.match((parseInput('{"x": 1}') as { error: string }).error, /dataframe_split/);
  });

  it('pretty-prints JSON answers only', () => {
    assert.equal(formatResponse('{"predictions":[0]}'), '{\n  "predictions": [\n    0\n  ]\n}');
    assert.equal(formatResponse('oops'), 'oops');
  });

  it('lists deployed served entities as direct targets', () => {
    const e: Endpoint = {
      name: 'ep',
      state: { ready: 'READY' },
      config: {
        served_entities: [
          { name: 'a', entity_name: 'm' },
          { name: 'b', entity_name: 'm' }
        ]
      }
    };
    assert.deepEqual(queryTargets(e), ['a', 'b']);
    assert.deepEqual(queryTargets({ name: 'x', state: { ready: 'NOT_READY' } }), []);
  });
});

describe('refreshDelay', () => {
  const steady: Endpoint = {
    name: 'a',
    state: { ready: 'READY', config_update: 'NOT_UPDATING' },
    config: { served_entities: [{ entity_name: 'm', state: { deployment: 'DEPLOYMENT_READY' } }] }
  };

  it('polls slowly when everything is steady', () => {
    assert.equal(refreshDelay([], 0), STEADY_MS);
    assert.equal(refreshDelay([steady], 0), STEADY_MS);
  });

  it('polls fast while something deploys or updates', () => {
    assert.equal(
      refreshDelay(
        [steady, { name: 'b', state: { ready: 'NOT_READY', config_update: 'IN_PROGRESS' } }],
        0
      ),
      FAST_MS
    );
    assert.equal(
      refreshDelay([{ ...steady, state: { ready: 'READY', config_update: 'IN_PROGRESS' } }], 0),
      FAST_MS
    );
    const recovering: Endpoint = {
      ...steady,
      config: {
        served_entities: [{ entity_name: 'm', state: { deployment: 'DEPLOYMENT_RECOVERING' } }]
      }
    };
    assert.equal(refreshDelay([recovering], 0), FAST_MS);
  });

  it('does not poll fast for a failed endpoint that will not change by itself', () => {
    assert.equal(
      refreshDelay(
        [{ name: 'f', state: { ready: 'NOT_READY', config_update: 'UPDATE_FAILED' } }],
        0
      ),
      STEADY_MS
    );
  });

  it('backs off exponentially while the server fails, up to a cap', () => {
    assert.equal(refreshDelay([], 1), STEADY_MS);
    assert.equal(refreshDelay([], 2), STEADY_MS * 2);
    assert.equal(refreshDelay([], 20), MAX_BACKOFF_MS);
  });
});

describe('the query tab: example from the signature, snippets', () => {
  const doc: OpenApiDoc = {
    paths: {
      '/served-models/iris-lr-1/invocations': {
        post: {
          requestBody: {
            content: {
              'application/json': {
                schema: {
                  oneOf: [
                    { properties: { dataframe_split: {} } },
                    {
                      properties: {
                        dataframe_records: {
                          type: 'array',
                          items: {
                            type: 'object',
                            properties: {
                              'sepal length (cm)': { type: 'number', format: 'double' },
                              n: { type: 'integer' },
                              name: { type: 'string' },
                              ok: { type: 'boolean' }
                            }
                          }
                        }
                      }
                    }
                  ]
                }
              }
            }
          }
        }
      }
    }
  };

  it('pre-fills one row in the signature columns', () => {
    const input = exampleFromOpenApi(doc);
    assert.ok(input);
    assert.equal(input.chat, false);
    assert.deepEqual(JSON.parse(input.example), {
      dataframe_split: {
        columns: ['sepal length (cm)', 'n', 'name', 'ok'],
        data: [[1, 1, 'text', false]]
      }
    });
    assert.equal(parseInput(input.example).ok, true);
    assert.match(input.example, /"data": \[\[1, 1, "text", false\]\]/); // one line per row
    assert.equal(exampleFromOpenApi({ paths: {} }), null);
  });

  it('writes curl and Python with the token from the environment', () => {
    const body = JSON.stringify({ dataframe_split: { columns: ["it's"], data: [[true, null]] } });
    const code = snippets('http://127.0.0.1:8888/', 'iris', body, false);
    assert.deepEqual(
      code.map(s => s.id),
      ['curl', 'python-sdk', 'mlflow']
    );
    const curl = code[0].code;
    assert.match(
      curl,
      /^curl -sS -X POST 'http:\/\/127\.0\.0\.1:8888\/serving-endpoints\/iris\/invocations'/
    );
    assert.match(curl, /Bearer \$DATABRICKS_TOKEN/);
    assert.match(curl, /'\\''/); // the quote inside the JSON survives the shell
    const sdk = code[1].code;
    assert.match(sdk, /token=os\.environ\["DATABRICKS_TOKEN"\]/);
    assert.match(
      sdk,
      /DataframeSplitInput\.from_dict\(\{"columns": \["it's"\], "data": \[\[True, None\]\]\}\)/
    );
    assert.equal(snippets('http://h/', 'chat', '{"messages": []}', true).at(-1)?.id, 'openai');
    const agent = snippets(
      'http://h/',
      'agent',
      '{"input": [{"role": "user", "content": "hi"}]}',
      true
    );
    assert.match(
      agent.at(-1)!.code,
      /client\.responses\.create\(\n {4}model="agent", input=\[\{"role": "user", "content": "hi"\}\]/
    );
    assert.match(agent.at(-1)!.code, /base_url="http:\/\/h\/serving-endpoints"/);
    assert.equal(pyLiteral({ a: [1, 2.5, 'x', false] }), '{"a": [1, 2.5, "x", False]}');
  });

  it('reads table latencies under a millisecond as "< 1 ms" and times as 24-hour', () => {
    assert.equal(formatTableMs(0), '< 1 ms');
    assert.equal(formatTableMs(3), '3 ms');
    assert.equal(formatTableMs(2.5), '2.5 ms');
    assert.equal(formatTableMs(null), '–');
    assert.match(formatClock(Date.UTC(2026, 0, 1, 15, 4, 5)), /^\d\d:04:05$/);
  });
});
