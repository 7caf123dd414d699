/**
 * Query-playground helpers: checking the JSON typed in and a starting example.
 */

import type { Endpoint } from './types';

/** The keys an invocation body may carry (Databricks scoring formats, then agent/LLM requests). */
export const INPUT_KEYS = [
  'dataframe_split',
  'dataframe_records',
  'instances',
  'inputs',
  'input',
  'messages',
  'prompt'
] as const;

export type ParsedInput = { ok: true; body: string } | { ok: false; error: string };

/** Validate the playground text before sending, so typos get a local message, not a 400. */
export function parseInput(text: string): ParsedInput {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `Not valid JSON: ${(e as Error).message}` };
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    return { ok: false, error: 'The request must be a JSON object.' };
  }
  const keys = Object.keys(value as object);
  if (!INPUT_KEYS.some(k => keys.includes(k))) {
    return { ok: false, error: `The request needs one of: ${INPUT_KEYS.join(', ')}.` };
  }
  return { ok: true, body: JSON.stringify(value) };
}

/** A starting example; the user replaces the columns with the model's own. */
export function exampleInput(): string {
  return JSON.stringify({ dataframe_split: { columns: ['x'], data: [[1.0]] } }, null, 2);
}

/** Pretty-print a JSON answer; other text is shown as it came. */
export function formatResponse(body: string): string {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}

/** Served entities a query can target directly (bypassing the traffic split). */
export function queryTargets(endpoint: Endpoint): string[] {
  const entities = endpoint.config?.served_entities ?? endpoint.config?.served_models ?? [];
  return entities.map(e => e.name).filter((n): n is string => !!n);
}

/** The part of `GET /api/2.0/serving-endpoints/{name}/openapi` the playground reads. */
export interface OpenApiDoc {
  paths?: Record<
    string,
    { post?: { requestBody?: { content?: Record<string, { schema?: JsonSchema }> } } }
  >;
}

export interface JsonSchema {
  type?: string;
  format?: string;
  enum?: unknown[];
  items?: JsonSchema;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  oneOf?: JsonSchema[];
}

/** What the served model takes, read from the endpoint's OpenAPI document. */
export interface ModelInput {
  /** A request the model accepts: one row of placeholder values in the signature's columns. */
  example: string;
  /**
   * The model takes OpenAI-style input: chat `messages` (a chat model or ChatAgent) or a Responses
   * `input` (a ResponsesAgent), so the OpenAI client can query it.
   */
  chat: boolean;
}

/**
 * A valid first request from the served model's signature (the first served entity's request
 * schema), so the first click on "Send" answers instead of failing with a 400. Null when the model
 * has no signature: then only the user knows its input.
 */
export function exampleFromOpenApi(doc: OpenApiDoc): ModelInput | null {
  const first = Object.values(doc.paths ?? {})[0];
  const schema = first?.post?.requestBody?.content?.['application/json']?.schema;
  const variants = schema?.oneOf ?? [];
  const records = variants.find(v => v.properties?.dataframe_records)?.properties?.dataframe_records
    ?.items;
  if (records?.properties) {
    const columns = Object.keys(records.properties);
    if (columns.includes('messages')) {
      const example = { messages: [{ role: 'user', content: 'Hello!' }] };
      return { example: compactJson(example), chat: true };
    }
    const row = columns.map(c => placeholder(records.properties![c]));
    const example = { dataframe_split: { columns, data: [row] } };
    return { example: compactJson(example), chat: false };
  }
  const tensor = variants.find(v => v.properties?.inputs)?.properties?.inputs?.items;
  if (tensor) {
    return { example: compactJson({ inputs: [placeholder(tensor)] }), chat: false };
  }
  return null;
}

/** Indented JSON with arrays of plain values (columns, rows) kept on one line each. */
export function compactJson(value: unknown): string {
  const line = (text: string): string =>
    text.replace(
      /\[\n\s*((?:[^[\]{}\n]|\[[^[\]{}\n]*\]|,\n\s*)*?)\n\s*\]/g,
      (_m, inner: string) => `[${inner.split(/,\n\s*/).join(', ')}]`
    );
  return line(line(JSON.stringify(value, null, 2)));
}

/** A value of the schema's type: numbers 1, text "text", booleans false, one-item arrays. */
function placeholder(schema: JsonSchema): unknown {
  switch (schema.type) {
    case 'integer':
      return 1;
    case 'number':
      return 1.0;
    case 'boolean':
      return false;
    case 'string':
      return schema.format === 'date-time' ? new Date(0).toISOString() : 'text';
    case 'array':
      return [placeholder(schema.items ?? {})];
    case 'object':
      return Object.fromEntries(
        Object.entries(schema.properties ?? {}).map(([k, v]) => [k, placeholder(v)])
      );
    default:
      return 1.0;
  }
}

export interface Snippet {
  id: 'curl' | 'python-sdk' | 'mlflow' | 'openai';
  title: string;
  code: string;
}

/** The environment variable every snippet reads the token from; its value is never shown. */
export const TOKEN_VARIABLE = 'DATABRICKS_TOKEN';

/**
 * Ready-to-copy code for querying the endpoint with `body` (the playground's JSON), filled in for
 * this server: curl, the Databricks SDK for Python, MLflow deployments, and the OpenAI client for
 * chat models and agents (`responses.create` for a Responses `input`, else `chat.completions`).
 * The token comes from $DATABRICKS_TOKEN, as on Databricks.
 */
export function snippets(
  serverUrl: string,
  endpoint: string,
  body: string,
  chat: boolean
): Snippet[] {
  const host = serverUrl.replace(/\/+$/, '');
  const url = `${host}/serving-endpoints/${encodeURIComponent(endpoint)}/invocations`;
  const compact = JSON.stringify(JSON.parse(body));
  const payload = JSON.parse(body) as Record<string, unknown>;
  const out: Snippet[] = [
    {
      id: 'curl',
      title: 'curl',
      code: [
        `curl -sS -X POST ${shellQuote(url)} \\`,
        `  -H "Authorization: Bearer $${TOKEN_VARIABLE}" \\`,
        '  -H "Content-Type: application/json" \\',
        `  -d ${shellQuote(compact)}`
      ].join('\n')
    },
    {
      id: 'python-sdk',
      title: 'Python (databricks-sdk)',
      code: sdkSnippet(host, endpoint, payload)
    },
    {
      id: 'mlflow',
      title: 'MLflow deployments',
      code: [
        'import os',
        '',
        'from mlflow.deployments import get_deploy_client',
        '',
        `os.environ.setdefault("DATABRICKS_HOST", ${pyLiteral(host)})  # the token: $${TOKEN_VARIABLE}`,
        'client = get_deploy_client("databricks")',
        `print(client.predict(endpoint=${pyLiteral(endpoint)}, inputs=${pyLiteral(payload)}))`
      ].join('\n')
    }
  ];
  if (chat) {
    out.push({
      id: 'openai',
      title: 'OpenAI client',
      code: openAiSnippet(host, endpoint, payload)
    });
  }
  return out;
}

function openAiSnippet(host: string, endpoint: string, payload: Record<string, unknown>): string {
  const hello = [{ role: 'user', content: 'Hello!' }];
  const call =
    'input' in payload && !('messages' in payload)
      ? [
          'response = client.responses.create(',
          `    model=${pyLiteral(endpoint)}, input=${pyLiteral(payload.input ?? hello)}`,
          ')',
          'print(response.output_text)'
        ]
      : [
          'response = client.chat.completions.create(',
          `    model=${pyLiteral(endpoint)}, messages=${pyLiteral(payload.messages ?? hello)}`,
          ')',
          'print(response.choices[0].message.content)'
        ];
  return [
    'import os',
    '',
    'from openai import OpenAI',
    '',
    `client = OpenAI(api_key=os.environ[${pyLiteral(TOKEN_VARIABLE)}], base_url=${pyLiteral(`${host}/serving-endpoints`)})`,
    ...call
  ].join('\n');
}

function sdkSnippet(host: string, endpoint: string, payload: Record<string, unknown>): string {
  const imports = ['from databricks.sdk import WorkspaceClient'];
  const args = Object.entries(payload).map(([key, value]) => {
    if (key === 'dataframe_split') {
      imports.push('from databricks.sdk.service.serving import DataframeSplitInput');
      return `    dataframe_split=DataframeSplitInput.from_dict(${pyLiteral(value)}),`;
    }
    return `    ${key}=${pyLiteral(value)},`;
  });
  return [
    'import os',
    '',
    ...imports,
    '',
    `w = WorkspaceClient(host=${pyLiteral(host)}, token=os.environ[${pyLiteral(TOKEN_VARIABLE)}], auth_type="pat")`,
    'response = w.serving_endpoints.query(',
    `    name=${pyLiteral(endpoint)},`,
    ...args,
    ')',
    'print(response.as_dict())'
  ].join('\n');
}

/** A JSON value as a Python literal (True/False/None; strings as JSON strings, valid Python). */
export function pyLiteral(value: unknown): string {
  if (value === null || value === undefined) {
    return 'None';
  }
  if (value === true) {
    return 'True';
  }
  if (value === false) {
    return 'False';
  }
  if (Array.isArray(value)) {
    return `[${value.map(pyLiteral).join(', ')}]`;
  }
  if (typeof value === 'object') {
    const items = Object.entries(value as Record<string, unknown>).map(
      ([k, v]) => `${JSON.stringify(k)}: ${pyLiteral(v)}`
    );
    return `{${items.join(', ')}}`;
  }
  if (typeof value === 'number' && Number.isInteger(value) && !String(value).includes('.')) {
    return String(value);
  }
  return JSON.stringify(value);
}

/** Single-quoted for a POSIX shell (a quote inside becomes '\''). */
export function shellQuote(text: string): string {
  return `'${text.replace(/'/g, "'\\''")}'`;
}
