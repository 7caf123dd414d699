import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ServingClient, Transport } from '../src/client';
import { ServingApiError } from '../src/errors';

interface Call {
  path: string;
  init: RequestInit;
}

/** A transport answering from a table keyed by "METHOD path", recording every call. */
function fake(routes: Record<string, () => Response>): { transport: Transport; calls: Call[] } {
  const calls: Call[] = [];
  const transport: Transport = async (path, init) => {
    calls.push({ path, init });
    const answer = routes[`${init.method} ${path}`];
    return answer
      ? answer()
      : new Response('{"message": "", "reason": "Not Found"}', { status: 404 });
  };
  return { transport, calls };
}

const json =
  (body: unknown, status = 200, headers: Record<string, string> = {}): (() => Response) =>
  () =>
    new Response(JSON.stringify(body), {
      status,
      headers: { 'Content-Type': 'application/json', ...headers }
    });

describe('ServingClient', () => {
  it('fetches details for every listed endpoint and skips ones deleted meanwhile', async () => {
    const { transport } = fake({
      'GET api/2.0/serving-endpoints': json({ endpoints: [{ name: 'a' }, { name: 'gone' }] }),
      'GET api/2.0/serving-endpoints/a': json({ name: 'a', state: { ready: 'READY' }, config: {} }),
      'GET api/2.0/serving-endpoints/gone': json(
        { error_code: 'RESOURCE_DOES_NOT_EXIST', message: 'no' },
        404
      )
    });
    const endpoints = await new ServingClient(transport).listEndpointDetails();
    assert.deepEqual(
      endpoints.map(e => e.name),
      ['a']
    );
  });

  it('sends JSON bodies with the right verbs and escaped names', async () => {
    const { transport, calls } = fake({
      'POST api/2.0/serving-endpoints': json({ name: 'ep', state: { ready: 'NOT_READY' } }),
      'PUT api/2.0/serving-endpoints/a%20b/config': json({
        name: 'a b',
        state: { ready: 'READY' }
      }),
      'POST api/2.0/serving-endpoints/ep/cancel-update': json({
        name: 'ep',
        state: { ready: 'READY' }
      }),
      'DELETE api/2.0/serving-endpoints/ep': json({}),
      'GET api/2.0/serving-endpoints/ep/served-models/m-1/logs': json({ logs: 'hello' }),
      'GET api/2.0/jupyter-serving/registered-models': json({
        registered_models: [{ name: 'm', versions: [] }]
      })
    });
    const client = new ServingClient(transport);
    await client.createEndpoint({
      name: 'ep',
      config: { served_entities: [{ entity_name: 'm' }] }
    });
    await client.updateConfig('a b', { served_entities: [] });
    await client.cancelUpdate('ep');
    await client.deleteEndpoint('ep');
    assert.equal(await client.logs('ep', 'm-1'), 'hello');
    assert.deepEqual(await client.registeredModels(), [{ name: 'm', versions: [] }]);
    assert.deepEqual(
      calls.map(c => [c.init.method, c.path]),
      [
        ['POST', 'api/2.0/serving-endpoints'],
        ['PUT', 'api/2.0/serving-endpoints/a%20b/config'],
        ['POST', 'api/2.0/serving-endpoints/ep/cancel-update'],
        ['DELETE', 'api/2.0/serving-endpoints/ep'],
        ['GET', 'api/2.0/serving-endpoints/ep/served-models/m-1/logs'],
        ['GET', 'api/2.0/jupyter-serving/registered-models']
      ]
    );
    assert.deepEqual(JSON.parse(calls[0].init.body as string), {
      name: 'ep',
      config: { served_entities: [{ entity_name: 'm' }] }
    });
    assert.deepEqual(calls[0].init.headers, { 'Content-Type': 'application/json' });
    assert.equal(calls[3].init.headers, undefined);
  });

  it('turns error answers into ServingApiError with the server message', async () => {
    const { transport } = fake({
      'POST api/2.0/serving-endpoints': json(
        { error_code: 'INVALID_PARAMETER_VALUE', message: 'bad name' },
        400
      )
    });
    await assert.rejects(
      new ServingClient(transport).createEndpoint({ name: '', config: { served_entities: [] } }),
      (err: unknown) =>
        err instanceof ServingApiError &&
        err.errorCode === 'INVALID_PARAMETER_VALUE' &&
        err.message === 'bad name'
    );
  });

  it('accepts empty bodies (DELETE answering 204)', async () => {
    const { transport } = fake({
      'DELETE api/2.0/serving-endpoints/ep': () => new Response(null, { status: 204 })
    });
    await new ServingClient(transport).deleteEndpoint('ep');
  });

  it('returns invocation answers, errors included, with the serving headers and timing', async () => {
    let t = 1000;
    const { transport, calls } = fake({
      'POST serving-endpoints/ep/invocations': json({ predictions: [0] }, 200, {
        'served-model-name': 'm-1',
        'x-request-id': 'r1'
      }),
      'POST serving-endpoints/ep/served-models/m-2/invocations': json(
        { error_code: 'BAD_REQUEST', message: 'no' },
        400
      )
    });
    const client = new ServingClient(transport, () => (t += 7));
    const ok = await client.query('ep', '{"inputs": [1]}');
    assert.deepEqual(ok, {
      status: 200,
      ok: true,
      body: '{"predictions":[0]}',
      servedModelName: 'm-1',
      requestId: 'r1',
      elapsedMs: 7
    });
    const bad = await client.query('ep', '{}', 'm-2');
    assert.equal(bad.ok, false);
    assert.equal(bad.status, 400);
    assert.equal(calls[0].init.body, '{"inputs": [1]}');
  });
});
