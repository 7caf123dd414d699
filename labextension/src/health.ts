/**
 * Failure and recovery of an endpoint and its served entities between two polls (the same rules as
 * jupyter_serving/notebook/health.py), so the panel notifies once per change, not on every refresh.
 */

import type { Endpoint } from './types';

export type Health = 'failed' | 'ok' | 'other';
const ENTITY_FAILED = new Set(['DEPLOYMENT_FAILED', 'DEPLOYMENT_ABORTED']);

/** '' -> the endpoint's health; '<served entity>' -> that entity's. */
export function health(endpoint: Endpoint): Map<string, Health> {
  const out = new Map<string, Health>();
  for (const config of [endpoint.config, endpoint.pending_config]) {
    for (const e of config?.served_entities ?? []) {
      if (!e.name) {
        continue;
      }
      const deployment = e.state?.deployment ?? '';
      out.set(
        e.name,
        ENTITY_FAILED.has(deployment)
          ? 'failed'
          : deployment === 'DEPLOYMENT_READY'
            ? 'ok'
            : 'other'
      );
    }
  }
  const state = endpoint.state;
  const entityFailed = [...out.values()].includes('failed') && state?.ready !== 'READY';
  out.set(
    '',
    state?.config_update === 'UPDATE_FAILED' || entityFailed
      ? 'failed'
      : state?.ready === 'READY'
        ? 'ok'
        : 'other'
  );
  return out;
}

export interface HealthChange {
  failed: boolean;
  message: string;
}

/** What failed, or recovered after failing; on the first look, only what is failed already. */
export function transitions(
  name: string,
  before: Map<string, Health> | undefined,
  after: Map<string, Health>
): HealthChange[] {
  const out: HealthChange[] = [];
  for (const [key, now] of after) {
    const was = before?.get(key);
    const what = key ? `Served entity '${key}' of endpoint '${name}'` : `Endpoint '${name}'`;
    if (now === 'failed' && was !== 'failed') {
      out.push({ failed: true, message: `${what} has failed` });
    } else if (before && now === 'ok' && was === 'failed') {
      out.push({ failed: false, message: `${what} has recovered` });
    }
  }
  return out;
}
