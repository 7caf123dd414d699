import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { HealthNotices, LOOKBACK_MS } from '../src/health';
import type { ServingEvent } from '../src/history';

function event(t: number, type: string, served?: string, message = type): ServingEvent {
  return {
    timestamp_ms: t,
    type,
    severity: 'INFO',
    message,
    ...(served ? { served_entity: served } : {})
  };
}

describe('HealthNotices (the same rules as notebook/health.py)', () => {
  it('fires once on failure and once on recovery, from the server events', () => {
    const notices = new HealthNotices('ep');
    assert.equal(notices.sinceMs, 0);
    const history = [event(1000, 'DEPLOYMENT_FAILED', 'm-0'), event(2000, 'ENTITY_READY', 'm-0')];
    assert.deepEqual(notices.read(history), []); // recovered before anyone looked: not news
    const failed = [event(70_000, 'UPDATE_FAILED'), event(71_000, 'DEPLOYMENT_FAILED', 'm-1')];
    assert.deepEqual(notices.read([...history, ...failed]), [
      { failed: true, message: "Endpoint 'ep' has failed" },
      { failed: true, message: "Served entity 'm-1' of endpoint 'ep' has failed" }
    ]);
    assert.equal(notices.sinceMs, 71_000 - LOOKBACK_MS);
    assert.deepEqual(notices.read(failed), []); // the look-back reads them again: announced once
    assert.deepEqual(notices.read([event(72_000, 'DEPLOYMENT_FAILED', 'm-1', 'again')]), []);
    assert.deepEqual(
      notices.read([event(80_000, 'UPDATE_SUCCEEDED'), event(81_000, 'ENTITY_READY', 'm-1')]),
      [
        { failed: false, message: "Endpoint 'ep' has recovered" },
        { failed: false, message: "Served entity 'm-1' of endpoint 'ep' has recovered" }
      ]
    );
    assert.deepEqual(
      notices.read([event(90_000, 'SCALED_UP', 'm-1'), event(90_000, 'REPLICA_CRASHED', 'm-1')]),
      []
    );
  });

  it('announces on the first read only what is failed now', () => {
    const notices = new HealthNotices('ep');
    assert.deepEqual(
      notices.read([event(5, 'UPDATE_FAILED'), event(6, 'DEPLOYMENT_FAILED', 'm-1')]),
      [
        { failed: true, message: "Endpoint 'ep' has failed" },
        { failed: true, message: "Served entity 'm-1' of endpoint 'ep' has failed" }
      ]
    );
    assert.deepEqual(notices.read([]), []);
  });
});
