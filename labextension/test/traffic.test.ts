import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  apportion,
  clampPercent,
  evenSplit,
  normalise,
  setShare,
  sum,
  trafficSegments
} from '../src/traffic';

describe('evenSplit', () => {
  it('gives the remainder to the first entities', () => {
    assert.deepEqual(evenSplit(1), [100]);
    assert.deepEqual(evenSplit(2), [50, 50]);
    assert.deepEqual(evenSplit(3), [34, 33, 33]);
    assert.deepEqual(
      evenSplit(7).reduce((a, b) => a + b),
      100
    );
  });

  it('is empty for no entities', () => {
    assert.deepEqual(evenSplit(0), []);
  });
});

describe('normalise', () => {
  it('scales weights to integers summing to 100', () => {
    assert.deepEqual(normalise([1, 1]), [50, 50]);
    assert.deepEqual(normalise([1, 3]), [25, 75]);
    assert.deepEqual(normalise([30, 30]), [50, 50]);
    assert.deepEqual(normalise([1, 1, 1]), [34, 33, 33]);
  });

  it('uses largest remainders, so rounding never breaks the total', () => {
    for (const weights of [
      [1, 2, 3],
      [0.1, 0.2, 0.7],
      [13, 17, 19, 23],
      [99, 1, 1]
    ]) {
      assert.equal(sum(normalise(weights)), 100, String(weights));
    }
    assert.deepEqual(normalise([2, 2, 1]), [40, 40, 20]);
  });

  it('treats zero, negative and NaN weights as zero and splits evenly when nothing is left', () => {
    assert.deepEqual(normalise([0, 0]), [50, 50]);
    assert.deepEqual(normalise([-5, 5]), [0, 100]);
    assert.deepEqual(normalise([NaN, 1]), [0, 100]);
  });
});

describe('apportion', () => {
  it('splits any total', () => {
    assert.deepEqual(apportion([1, 1], 7), [4, 3]);
    assert.deepEqual(apportion([1, 1], 0), [0, 0]);
  });
});

describe('setShare', () => {
  it('moves the rest to the other entity of a pair', () => {
    assert.deepEqual(setShare([50, 50], 0, 80), [80, 20]);
    assert.deepEqual(setShare([50, 50], 1, 10), [90, 10]);
  });

  it('keeps the relative weights of the others', () => {
    assert.deepEqual(setShare([40, 40, 20], 0, 60), [60, 27, 13]);
    assert.equal(sum(setShare([40, 40, 20], 0, 60)), 100);
  });

  it('clamps and rounds the value', () => {
    assert.deepEqual(setShare([50, 50], 0, 150), [100, 0]);
    assert.deepEqual(setShare([50, 50], 0, -3), [0, 100]);
    assert.deepEqual(setShare([50, 50], 0, 33.6), [34, 66]);
    assert.deepEqual(setShare([50, 50], 0, NaN), [0, 100]);
  });

  it('splits evenly among others that had nothing', () => {
    assert.deepEqual(setShare([100, 0, 0], 0, 50), [50, 25, 25]);
  });

  it('pins a single entity at 100', () => {
    assert.deepEqual(setShare([100], 0, 30), [100]);
  });

  it('ignores an index out of range', () => {
    assert.deepEqual(setShare([60, 40], 5, 10), [60, 40]);
  });
});

describe('clampPercent', () => {
  it('rounds into 0..100', () => {
    assert.equal(clampPercent(49.5), 50);
    assert.equal(clampPercent(Infinity), 0);
    assert.equal(clampPercent(101), 100);
  });
});

describe('trafficSegments', () => {
  it('orders segments as the served entities and keeps unknown routes last', () => {
    const segments = trafficSegments(
      [
        { served_model_name: 'b', traffic_percentage: 20 },
        { served_model_name: 'zz', traffic_percentage: 0 },
        { served_model_name: 'a', traffic_percentage: 80 }
      ],
      ['a', 'b']
    );
    assert.deepEqual(
      segments.map(s => [s.name, s.percentage, s.colour]),
      [
        ['a', 80, 0],
        ['b', 20, 1],
        ['zz', 0, 3]
      ]
    );
  });
});
