/**
 * Keeps the endpoint list fresh without a timer per component: one loop per panel, paused while the
 * panel is hidden, woken at once by an action (create, delete, ...) or by showing the panel again.
 */

import { refreshDelay } from './poll';
import type { Endpoint } from './types';

export interface RefreshResult {
  endpoints: Endpoint[] | null;
  error: unknown;
}

export class Refresher {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private failures = 0;
  private last: Endpoint[] = [];
  private running: Promise<void> | null = null;
  private disposed = false;

  constructor(
    private readonly load: () => Promise<Endpoint[]>,
    private readonly isActive: () => boolean,
    private readonly onResult: (result: RefreshResult) => void
  ) {}

  /** Refresh now (joining a refresh already in flight) and re-arm the timer. */
  refresh(): Promise<void> {
    if (this.disposed) {
      return Promise.resolve();
    }
    if (!this.running) {
      this.running = this.once().finally(() => {
        this.running = null;
        this.schedule();
      });
    }
    return this.running;
  }

  dispose(): void {
    this.disposed = true;
    this.clear();
  }

  private async once(): Promise<void> {
    let result: RefreshResult;
    try {
      this.last = await this.load();
      this.failures = 0;
      result = { endpoints: this.last, error: null };
    } catch (error) {
      this.failures += 1;
      result = { endpoints: null, error };
    }
    // The view may have gone while the request was out.
    if (!this.disposed) {
      this.onResult(result);
    }
  }

  private schedule(): void {
    this.clear();
    if (this.disposed) {
      return;
    }
    const delay = refreshDelay(this.last, this.failures);
    this.timer = setTimeout(() => {
      // Hidden panels skip the request but keep ticking, so showing the panel is never stale for long.
      if (this.isActive()) {
        void this.refresh();
      } else {
        this.schedule();
      }
    }, delay);
  }

  private clear(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }
}
