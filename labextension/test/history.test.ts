import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  alignMetric,
  alignTraffic,
  formatAgo,
  formatMs,
  formatRate,
  History,
  latest,
  latestMs,
  mergeEvents,
  mergeHistory,
  ServingEvent,
  withErrorRate
} from '../src/history';

function history(
  times: number[],
  entities: Record<string, Record<string, (number | null)[]>>,
  traffic: Record<string, number[]> = {},
  retention = 3600
): History {
  return {
    interval_s: 1,
    retention_s: retention,
    served_entities: Object.entries(entities).map(([name, samples]) => ({
      name,
      samples: { timestamp_ms: samples.timestamp_ms ?? times, ...samples } as History['traffic']
    })),
    traffic: { timestamp_ms: times, ...traffic }
  };
}

describe('mergeHistory', () => {
  it('appends a delta to each entity and to the traffic', () => {
    const first = history([1000, 2000], { a: { requests_per_s: [1, 2] } }, { a: [100, 100] });
    const delta = history([3000], { a: { requests_per_s: [3] } }, { a: [100] });
    const merged = mergeHistory(first, delta);
    assert.deepEqual(merged.served_entities[0].samples.requests_per_s, [1, 2, 3]);
    assert.deepEqual(merged.traffic.timestamp_ms, [1000, 2000, 3000]);
    assert.equal(latestMs(merged), 3000);
  });

  it('gives an entity new in the delta gaps, not zeros, in the traffic before it existed', () => {
    const first = history([1000], { a: { requests_per_s: [1] } }, { a: [100] });
    const delta = history(
      [2000],
      { a: { requests_per_s: [1] }, b: { requests_per_s: [5] } },
      { a: [50], b: [50] }
    );
    const merged = mergeHistory(first, delta);
    assert.deepEqual(merged.traffic.b, [null, 50]);
    assert.deepEqual(
      merged.served_entities.map(e => e.name),
      ['a', 'b']
    );
  });

  it('drops samples older than the retention, so an open page stays bounded', () => {
    let h: History | null = null;
    for (let t = 1; t <= 100; t++) {
      h = mergeHistory(h, history([t * 1000], { a: { requests_per_s: [t] } }, { a: [100] }, 10));
    }
    const samples = h!.served_entities[0].samples;
    assert.deepEqual(
      samples.timestamp_ms,
      [90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100].map(t => t * 1000)
    );
    assert.equal(h!.traffic.timestamp_ms.length, 11);
  });

  it('forgets an entity whose samples all aged out', () => {
    const old = history([1000], { gone: { requests_per_s: [1] } }, {}, 5);
    const merged = mergeHistory(old, history([60_000], { a: { requests_per_s: [1] } }, {}, 5));
    assert.deepEqual(
      merged.served_entities.map(e => e.name),
      ['a']
    );
  });
});

describe('alignMetric', () => {
  it('puts entities on the union of their times, with gaps where one has no sample', () => {
    const h = history([], {
      a: { timestamp_ms: [1000, 2000], latency_p99_ms: [5, null] },
      b: { timestamp_ms: [2000, 3000], latency_p99_ms: [7, 8] }
    });
    assert.deepEqual(alignMetric(h, 'latency_p99_ms', ['a', 'b']), [
      [1, 2, 3],
      [5, null, null],
      [null, 7, 8]
    ]);
  });

  it('keeps a series for an entity without history, and transforms values', () => {
    const h = history([1000], { a: { memory_bytes: [2 ** 21] } });
    assert.deepEqual(
      alignMetric(h, 'memory_bytes', ['a', 'b'], v => v / 2 ** 20),
      [[1], [2], [null]]
    );
  });
});

describe('withErrorRate and alignTraffic', () => {
  it('sums 4xx and 5xx rates, leaving gaps where neither is known', () => {
    const h = withErrorRate(
      history([1000, 2000], {
        a: { requests_4xx_per_s: [1, null], requests_5xx_per_s: [0.5, null] }
      })
    );
    assert.deepEqual(h.served_entities[0].samples.errors_per_s, [1.5, null]);
  });

  it('draws the split per entity in entity order', () => {
    const h = history([1000, 2000], {}, { a: [100, 80], b: [0, 20] });
    assert.deepEqual(alignTraffic(h, ['b', 'a', 'c']), [
      [1, 2],
      [0, 20],
      [100, 80],
      [null, null]
    ]);
  });
});

describe('latest', () => {
  it('sums rates and replicas and takes the worst p99 over entities', () => {
    const h = history([1000, 2000], {
      a: {
        requests_per_s: [1, 10],
        latency_p99_ms: [3, 4],
        requests_4xx_per_s: [0, 1],
        requests_5xx_per_s: [0, 0],
        ready_replicas: [1, 1]
      },
      b: {
        requests_per_s: [1, 5],
        latency_p99_ms: [9, null],
        requests_4xx_per_s: [0, 0],
        requests_5xx_per_s: [0, 2],
        ready_replicas: [1, 2]
      }
    });
    assert.deepEqual(latest(h), { requestsPerS: 15, p99Ms: 4, errorsPerS: 3, readyReplicas: 3 });
  });

  it('knows nothing without samples', () => {
    assert.deepEqual(latest(null), {
      requestsPerS: null,
      p99Ms: null,
      errorsPerS: null,
      readyReplicas: null
    });
  });
});

describe('formatting', () => {
  it('formats rates, durations and ages', () => {
    assert.equal(formatRate(null), '–');
    assert.equal(formatRate(0.5), '0.50');
    assert.equal(formatRate(42.25), '42.3');
    assert.equal(formatRate(1234.5), '1235');
    assert.equal(formatMs(1.25), '1.3 ms');
    assert.equal(formatMs(250), '250 ms');
    assert.equal(formatMs(2500), '2.50 s');
    assert.equal(formatAgo(100_000 - 5_000, 100_000), '5 s ago');
    assert.equal(formatAgo(0, 100_000), '–');
    assert.equal(formatAgo(1, 10 * 60_000), '10 min ago');
  });
});

describe('mergeEvents', () => {
  const e = (t: number, type = 'X'): ServingEvent => ({
    timestamp_ms: t,
    type,
    severity: 'INFO',
    message: `${t}`
  });

  it('appends new events once, oldest first, bounded', () => {
    const merged = mergeEvents([e(1), e(2)], [e(2), e(3)]);
    assert.deepEqual(
      merged.map(x => x.timestamp_ms),
      [1, 2, 3]
    );
    assert.equal(mergeEvents([], [e(1), e(2), e(3)], 2).length, 2);
    assert.equal(mergeEvents([e(5, 'A')], [e(5, 'B')]).length, 2);
  });
});
