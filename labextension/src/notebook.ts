/**
 * "Open in notebook": the `%%serve` cells equivalent to what the panel would send.
 *
 * The cell body is exactly the REST body (issue 6: `%%serve create` takes `name` + `config`,
 * `%%serve update NAME` takes the config), written as JSON because JSON is also valid YAML and
 * needs no YAML library here.
 */

import type { ConfigInput, CreateRequest } from './types';

export const LOAD_EXT = '%load_ext jupyter_serving';

export function createCell(request: CreateRequest): string {
  return `%%serve create\n${JSON.stringify(request, null, 2)}`;
}

export function updateCell(name: string, config: ConfigInput): string {
  return `%%serve update ${name}\n${JSON.stringify(config, null, 2)}`;
}

/**
 * The cells to insert: the magic, preceded by `%load_ext jupyter_serving` unless the notebook
 * already loads it (a cell magic must be the first line of its cell, so it cannot share one).
 */
export function cellsToInsert(magicCell: string, existingSources: string[]): string[] {
  const loaded = existingSources.some(src =>
    src.split('\n').some(line => line.trim() === LOAD_EXT)
  );
  return loaded ? [magicCell] : [LOAD_EXT, magicCell];
}
