/**
 * Failure and recovery notices of one endpoint, read from the server's events
 * (`GET .../endpoints/{name}/events`, derived by the server in monitoring/events.py). The same rules
 * as jupyter_serving/notebook/health.py, so the panel notifies once per change, not on every poll:
 *
 *   UPDATE_FAILED -> the endpoint has failed; DEPLOYMENT_FAILED -> its served entity has failed;
 *   UPDATE_SUCCEEDED / ENTITY_READY after that failure -> it has recovered.
 *
 * The first read (the whole log) announces only what is still failed at its end.
 */

import type { ServingEvent } from './history';

/** Events are stamped with when a change happened, which can precede its logging: look back. */
export const LOOKBACK_MS = 60_000;

export interface HealthChange {
  failed: boolean;
  message: string;
}

export class HealthNotices {
  /** '' for the endpoint, else a served entity's name. */
  readonly failed = new Set<string>();
  private seen = new Map<string, number>();
  private latest: number | null = null;

  constructor(readonly name: string) {}

  /** The `since_ms` to ask the events route for next. */
  get sinceMs(): number {
    return this.latest === null ? 0 : Math.max(0, this.latest - LOOKBACK_MS);
  }

  /** What failed or recovered among `events` not read before. */
  read(events: ServingEvent[]): HealthChange[] {
    const first = this.latest === null;
    const out: HealthChange[] = [];
    for (const e of [...events].sort((a, b) => a.timestamp_ms - b.timestamp_ms)) {
      const key = `${e.timestamp_ms}|${e.type}|${e.served_entity ?? ''}|${e.message}`;
      if (this.seen.has(key)) {
        continue;
      }
      this.seen.set(key, e.timestamp_ms);
      this.latest = Math.max(this.latest ?? e.timestamp_ms, e.timestamp_ms);
      out.push(...this.apply(e));
    }
    const latest = (this.latest ??= 0);
    for (const [key, t] of this.seen) {
      if (t < latest - LOOKBACK_MS) {
        this.seen.delete(key);
      }
    }
    if (first) {
      return [...this.failed]
        .sort()
        .map(key => ({ failed: true, message: `${this.what(key)} has failed` }));
    }
    return out;
  }

  private apply(e: ServingEvent): HealthChange[] {
    const update = e.type === 'UPDATE_FAILED' || e.type === 'UPDATE_SUCCEEDED';
    const key = update ? '' : e.served_entity;
    if (key === undefined || (update && e.served_entity)) {
      return [];
    }
    if ((e.type === 'UPDATE_FAILED' || e.type === 'DEPLOYMENT_FAILED') && !this.failed.has(key)) {
      this.failed.add(key);
      return [{ failed: true, message: `${this.what(key)} has failed` }];
    }
    if ((e.type === 'UPDATE_SUCCEEDED' || e.type === 'ENTITY_READY') && this.failed.has(key)) {
      this.failed.delete(key);
      return [{ failed: false, message: `${this.what(key)} has recovered` }];
    }
    return [];
  }

  private what(key: string): string {
    return key ? `Served entity '${key}' of endpoint '${this.name}'` : `Endpoint '${this.name}'`;
  }
}
