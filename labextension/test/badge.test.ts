import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  endpointBadges,
  entityBadge,
  isUpdating,
  principalText,
  replicaText,
  updateBadge
} from '../src/badge';
import type { Endpoint, ServedEntity } from '../src/types';

function endpoint(ready: string, config_update: string, extra: Partial<Endpoint> = {}): Endpoint {
  return { name: 'ep', state: { ready, config_update }, ...extra };
}

const labels = (e: Endpoint): string[] => endpointBadges(e).map(b => `${b.kind}:${b.label}`);

describe('endpointBadges', () => {
  it('shows READY alone when steady', () => {
    assert.deepEqual(labels(endpoint('READY', 'NOT_UPDATING')), ['ready:READY']);
  });

  it('shows NOT_READY plus updating while the first config deploys', () => {
    assert.deepEqual(labels(endpoint('NOT_READY', 'IN_PROGRESS')), [
      'not-ready:NOT_READY',
      'updating:updating'
    ]);
  });

  it('keeps READY during an update, since the old config still serves', () => {
    assert.deepEqual(labels(endpoint('READY', 'IN_PROGRESS')), [
      'ready:READY',
      'updating:updating'
    ]);
  });

  it('marks failed and canceled updates', () => {
    assert.deepEqual(labels(endpoint('NOT_READY', 'UPDATE_FAILED')), [
      'not-ready:NOT_READY',
      'failed:failed'
    ]);
    assert.deepEqual(labels(endpoint('READY', 'UPDATE_CANCELED')), [
      'ready:READY',
      'canceled:canceled'
    ]);
  });

  it('treats a missing state as not ready', () => {
    assert.deepEqual(labels({ name: 'x' } as Endpoint), ['not-ready:NOT_READY']);
  });

  it('puts the failed entities messages in the tooltip', () => {
    const e = endpoint('NOT_READY', 'UPDATE_FAILED', {
      pending_config: {
        served_entities: [
          {
            entity_name: 'm',
            state: { deployment: 'DEPLOYMENT_FAILED', deployment_state_message: 'boom' }
          }
        ]
      }
    });
    assert.equal(updateBadge(e)?.title, 'boom');
  });
});

describe('isUpdating', () => {
  it('is true only while an update is in progress', () => {
    assert.equal(isUpdating(endpoint('READY', 'IN_PROGRESS')), true);
    assert.equal(isUpdating(endpoint('READY', 'UPDATE_FAILED')), false);
  });
});

describe('entityBadge', () => {
  const entity = (deployment?: string, message = ''): ServedEntity => ({
    entity_name: 'm',
    state: deployment ? { deployment, deployment_state_message: message } : undefined
  });

  it('maps deployment states', () => {
    assert.equal(entityBadge(entity('DEPLOYMENT_READY')).kind, 'ready');
    assert.equal(entityBadge(entity('DEPLOYMENT_FAILED', 'load error')).kind, 'failed');
    assert.equal(entityBadge(entity('DEPLOYMENT_FAILED', 'load error')).title, 'load error');
    assert.equal(entityBadge(entity('DEPLOYMENT_ABORTED')).label, 'aborted');
    assert.equal(entityBadge(entity('DEPLOYMENT_CREATING')).label, 'creating');
    assert.equal(entityBadge(entity('DEPLOYMENT_RECOVERING')).kind, 'updating');
    assert.equal(entityBadge(entity()).label, 'creating');
  });
});

describe('replicaText', () => {
  it('counts ready replicas', () => {
    assert.equal(
      replicaText({ entity_name: 'm', local: { replicas: 2, ready_replicas: 1 } }),
      '1/2 replicas'
    );
    assert.equal(replicaText({ entity_name: 'm', local: { replicas: 1 } }), '1/1 replica');
  });

  it('says scaled to zero only for entities allowed to', () => {
    assert.equal(
      replicaText({ entity_name: 'm', scale_to_zero_enabled: true, local: { replicas: 0 } }),
      'scaled to zero'
    );
    assert.equal(
      replicaText({ entity_name: 'm', local: { replicas: 0, ready_replicas: 0 } }),
      '0/0 replicas'
    );
  });

  it('is null without local runtime data', () => {
    assert.equal(replicaText({ entity_name: 'm' }), null);
  });
});

describe('principalText', () => {
  it("names the creator and the caller's own level", () => {
    const e = endpoint('READY', 'NOT_UPDATING', { creator: 'app1', permission_level: 'CAN_QUERY' });
    assert.equal(principalText(e), 'Created by app1 · you: Can query');
  });

  it('shows the creator alone when the level is not known, and nothing without a creator', () => {
    assert.equal(
      principalText(endpoint('READY', 'NOT_UPDATING', { creator: 'root' })),
      'Created by root'
    );
    assert.equal(principalText(endpoint('READY', 'NOT_UPDATING')), null);
  });
});
