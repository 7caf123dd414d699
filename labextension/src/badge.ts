/**
 * Endpoint and served-entity state → the badges the panel shows.
 *
 * Databricks reports readiness and config updates as two independent fields (an endpoint can be
 * READY while an update is in progress, because the old config keeps serving), so an endpoint gets a
 * readiness badge plus, when relevant, an update badge.
 */

import type { Endpoint, ServedEntity } from './types';

export type BadgeKind = 'ready' | 'not-ready' | 'updating' | 'failed' | 'canceled';

export interface Badge {
  kind: BadgeKind;
  label: string;
  /** Tooltip text: the raw server states, so nothing is hidden by the simplification. */
  title: string;
}

export function readinessBadge(endpoint: Endpoint): Badge {
  const ready = endpoint.state?.ready ?? 'NOT_READY';
  const title = `ready: ${ready}, config_update: ${endpoint.state?.config_update ?? 'NOT_UPDATING'}`;
  return ready === 'READY'
    ? { kind: 'ready', label: 'READY', title }
    : { kind: 'not-ready', label: 'NOT_READY', title };
}

/** The update badge, or null when no update is running or has just ended badly. */
export function updateBadge(endpoint: Endpoint): Badge | null {
  const update = endpoint.state?.config_update;
  const title = `config_update: ${update}`;
  switch (update) {
    case 'IN_PROGRESS':
      return { kind: 'updating', label: 'updating', title };
    case 'UPDATE_FAILED':
      return { kind: 'failed', label: 'failed', title: failureTitle(endpoint) ?? title };
    case 'UPDATE_CANCELED':
      return { kind: 'canceled', label: 'canceled', title };
    default:
      return null;
  }
}

export function endpointBadges(endpoint: Endpoint): Badge[] {
  const update = updateBadge(endpoint);
  return update ? [readinessBadge(endpoint), update] : [readinessBadge(endpoint)];
}

export function isUpdating(endpoint: Endpoint): boolean {
  return endpoint.state?.config_update === 'IN_PROGRESS';
}

/** Databricks deployment states of one served entity, reduced to the same badge vocabulary. */
export function entityBadge(entity: ServedEntity): Badge {
  const deployment = entity.state?.deployment ?? 'DEPLOYMENT_CREATING';
  const title = entity.state?.deployment_state_message || deployment;
  if (deployment === 'DEPLOYMENT_READY') {
    return { kind: 'ready', label: 'ready', title };
  }
  if (deployment === 'DEPLOYMENT_FAILED') {
    return { kind: 'failed', label: 'failed', title };
  }
  if (deployment === 'DEPLOYMENT_ABORTED') {
    return { kind: 'canceled', label: 'aborted', title };
  }
  // CREATING and RECOVERING both mean "not serving yet, working on it".
  return { kind: 'updating', label: deployment.replace('DEPLOYMENT_', '').toLowerCase(), title };
}

/** "1/2 replicas", or "scaled to zero" when an entity that may scale to zero has none. */
export function replicaText(entity: ServedEntity): string | null {
  const local = entity.local;
  if (!local || local.replicas === undefined) {
    return null;
  }
  if (local.replicas === 0 && entity.scale_to_zero_enabled) {
    return 'scaled to zero';
  }
  const ready = local.ready_replicas ?? local.replicas;
  const noun = local.replicas === 1 ? 'replica' : 'replicas';
  const features = (local.feature_tables ?? []).map(t => `${t.name} v${t.version}`);
  const suffix = features.length ? ` · features: ${features.join(', ')}` : '';
  return `${ready}/${local.replicas} ${noun}${suffix}`;
}

/**
 * "Created by alice · you: Can query": who owns the endpoint and what the caller may do with it,
 * the same line the `%serve` magics print. `permission_level` is the caller's own level (GET).
 */
export function principalText(endpoint: Endpoint): string | null {
  if (!endpoint.creator) {
    return null;
  }
  const level = endpoint.permission_level;
  const readable = level ? level.charAt(0) + level.slice(1).toLowerCase().replace(/_/g, ' ') : null;
  return `Created by ${endpoint.creator}` + (readable ? ` · you: ${readable}` : '');
}

function failureTitle(endpoint: Endpoint): string | null {
  const entities = endpoint.pending_config?.served_entities ?? [];
  const messages = entities
    .map(e => e.state?.deployment_state_message)
    .filter((m): m is string => !!m);
  return messages.length ? messages.join('\n') : null;
}
