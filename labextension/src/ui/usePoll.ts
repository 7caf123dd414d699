/**
 * Run `tick` now and every `intervalMs` while the page is visible; a hidden page does not poll.
 */

import * as React from 'react';

export function usePoll(
  tick: () => Promise<void>,
  intervalMs: number,
  isVisible: () => boolean,
  deps: React.DependencyList
): () => Promise<void> {
  const running = React.useRef<Promise<void> | null>(null);
  const run = React.useCallback((): Promise<void> => {
    if (!running.current) {
      running.current = tick().finally(() => {
        running.current = null;
      });
    }
    return running.current;
  }, deps);

  React.useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const loop = async (): Promise<void> => {
      if (stopped) {
        return;
      }
      if (isVisible()) {
        await run().catch(() => undefined);
      }
      if (!stopped) {
        timer = setTimeout(() => void loop(), intervalMs);
      }
    };
    void loop();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [run, intervalMs]);

  return run;
}
