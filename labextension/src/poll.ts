/**
 * How soon the panel refreshes: fast while something is changing, slow when all is steady, backing
 * off while the server does not answer, so an idle panel costs the 2-core machine next to nothing.
 */

import { isUpdating } from './badge';
import type { Endpoint } from './types';

export const FAST_MS = 1500;
export const STEADY_MS = 5000;
export const MAX_BACKOFF_MS = 60000;

export function isSettling(endpoint: Endpoint): boolean {
  if (isUpdating(endpoint) || endpoint.state?.ready !== 'READY') {
    return endpoint.state?.config_update !== 'UPDATE_FAILED';
  }
  const entities = endpoint.config?.served_entities ?? [];
  return entities.some(e => e.state?.deployment && e.state.deployment !== 'DEPLOYMENT_READY');
}

export function refreshDelay(endpoints: Endpoint[], consecutiveFailures: number): number {
  if (consecutiveFailures > 0) {
    return Math.min(MAX_BACKOFF_MS, STEADY_MS * 2 ** (consecutiveFailures - 1));
  }
  return endpoints.some(isSettling) ? FAST_MS : STEADY_MS;
}
