/**
 * Query-playground helpers: checking the JSON typed in and a starting example.
 */

import type { Endpoint } from './types';

/** The keys an invocation body may carry (Databricks scoring formats). */
export const INPUT_KEYS = ['dataframe_split', 'dataframe_records', 'instances', 'inputs'] as const;

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
