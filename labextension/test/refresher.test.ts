import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { RefreshResult, Refresher } from '../src/refresher';
import type { Endpoint } from '../src/types';

function deferred<T>(): {
  promise: Promise<T>;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
} {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('Refresher', () => {
  it('joins a refresh already in flight instead of sending a second request', async () => {
    let loads = 0;
    const pending = deferred<Endpoint[]>();
    const results: RefreshResult[] = [];
    const r = new Refresher(
      () => {
        loads += 1;
        return pending.promise;
      },
      () => true,
      result => results.push(result)
    );
    const a = r.refresh();
    const b = r.refresh();
    pending.resolve([{ name: 'ep', state: { ready: 'READY' } }]);
    await Promise.all([a, b]);
    r.dispose();
    assert.equal(loads, 1);
    assert.deepEqual(results, [
      { endpoints: [{ name: 'ep', state: { ready: 'READY' } }], error: null }
    ]);
  });

  it('reports failures without endpoints, then recovers', async () => {
    const results: RefreshResult[] = [];
    let fail = true;
    const r = new Refresher(
      async () => {
        if (fail) {
          throw new Error('down');
        }
        return [];
      },
      () => true,
      result => results.push(result)
    );
    await r.refresh();
    fail = false;
    await r.refresh();
    r.dispose();
    assert.equal(results[0].endpoints, null);
    assert.equal((results[0].error as Error).message, 'down');
    assert.deepEqual(results[1], { endpoints: [], error: null });
  });

  it('does nothing once disposed', async () => {
    let loads = 0;
    const r = new Refresher(
      async () => {
        loads += 1;
        return [];
      },
      () => true,
      () => undefined
    );
    r.dispose();
    await r.refresh();
    assert.equal(loads, 0);
  });
});
