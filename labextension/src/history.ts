/**
 * The metrics history and events the Model Serving page draws: merging polled deltas, aligning
 * series for the charts, and the one-line summary of an endpoint's latest sample.
 *
 * Pure functions over the wire types of `GET .../history` and `.../events`, so they are unit-tested
 * without a browser; the chart component only hands their output to uPlot.
 */

/** Columns of one served entity's samples: `timestamp_ms` and one list per metric, same length. */
export type Columns = { timestamp_ms: number[] } & Record<string, (number | null)[]>;

export interface EntityHistory {
  name: string;
  samples: Columns;
}

export interface History {
  interval_s: number;
  retention_s: number;
  sampler?: { ticks: number; busy_s: number };
  served_entities: EntityHistory[];
  /** `timestamp_ms` and, per served entity, its traffic percentage at that sample. */
  traffic: Columns;
}

export type Severity = 'INFO' | 'WARNING' | 'ERROR';

export interface ServingEvent {
  timestamp_ms: number;
  type: string;
  severity: Severity | string;
  served_entity?: string;
  message: string;
}

export interface InferenceTableView {
  path: string | null;
  requests: number;
  message?: string;
  rows: Record<string, unknown>[];
  comparison: {
    control: string;
    verdict: string;
    entities: Record<string, number | string | null>[];
  } | null;
}

/** The newest sample time in a history (0 when empty): the `since_ms` of the next poll. */
export function latestMs(history: History | null): number {
  if (!history) {
    return 0;
  }
  const times = [
    ...history.traffic.timestamp_ms,
    ...history.served_entities.flatMap(e => e.samples.timestamp_ms)
  ];
  return times.length ? Math.max(...times) : 0;
}

function appendColumns(before: Columns | undefined, delta: Columns, keepFrom: number): Columns {
  const keys = new Set([...Object.keys(before ?? {}), ...Object.keys(delta)]);
  const oldLength = before?.timestamp_ms.length ?? 0;
  const newLength = delta.timestamp_ms.length;
  const merged: Record<string, (number | null)[]> = {};
  for (const key of keys) {
    const old = before?.[key] ?? new Array<number | null>(oldLength).fill(null);
    const add = delta[key] ?? new Array<number | null>(newLength).fill(null);
    merged[key] = [...old, ...add];
  }
  const times = merged.timestamp_ms as number[];
  const first = times.findIndex(t => t >= keepFrom);
  const start = first === -1 ? times.length : first;
  for (const key of keys) {
    merged[key] = merged[key].slice(start);
  }
  return merged as Columns;
}

/**
 * Append a delta (the answer to `?since_ms=latestMs(previous)`) to what the page holds, dropping
 * samples older than the server's retention so a page left open stays bounded too.
 */
export function mergeHistory(previous: History | null, delta: History): History {
  if (!previous) {
    return delta;
  }
  const newest = Math.max(latestMs(previous), latestMs(delta));
  const keepFrom = newest - delta.retention_s * 1000;
  const byName = new Map(previous.served_entities.map(e => [e.name, e.samples]));
  for (const entity of delta.served_entities) {
    byName.set(entity.name, appendColumns(byName.get(entity.name), entity.samples, keepFrom));
  }
  for (const [name, samples] of byName) {
    if (!delta.served_entities.some(e => e.name === name)) {
      byName.set(name, appendColumns(samples, { timestamp_ms: [] }, keepFrom));
    }
  }
  return {
    interval_s: delta.interval_s,
    retention_s: delta.retention_s,
    sampler: delta.sampler,
    served_entities: [...byName]
      .filter(([, samples]) => samples.timestamp_ms.length > 0)
      .map(([name, samples]) => ({ name, samples }))
      .sort((a, b) => a.name.localeCompare(b.name)),
    traffic: appendColumns(previous.traffic, delta.traffic, keepFrom)
  };
}

/** uPlot's data layout: x values (seconds) first, then one y array per series, all aligned. */
export type Aligned = [number[], ...(number | null)[][]];

/**
 * One metric of several entities on a common time axis (the union of their sample times); an
 * entity without a sample at some time gets a gap there, not a made-up zero.
 */
export function alignMetric(
  history: History,
  metric: string,
  entities: string[],
  transform: (value: number) => number = v => v
): Aligned {
  const series = entities.map(name => history.served_entities.find(e => e.name === name));
  const times = [...new Set(series.flatMap(s => s?.samples.timestamp_ms ?? []))].sort(
    (a, b) => a - b
  );
  const index = new Map(times.map((t, i) => [t, i]));
  const ys = series.map(s => {
    const y = new Array<number | null>(times.length).fill(null);
    s?.samples.timestamp_ms.forEach((t, i) => {
      const value = s.samples[metric]?.[i];
      y[index.get(t) as number] = value === null || value === undefined ? null : transform(value);
    });
    return y;
  });
  return [times.map(t => t / 1000), ...ys];
}

/** Errors per second (4xx + 5xx) as one derived metric. */
export function withErrorRate(history: History): History {
  return {
    ...history,
    served_entities: history.served_entities.map(e => {
      const a = e.samples.requests_4xx_per_s ?? [];
      const b = e.samples.requests_5xx_per_s ?? [];
      const errors = e.samples.timestamp_ms.map((_, i) =>
        a[i] === null && b[i] === null ? null : (a[i] ?? 0) + (b[i] ?? 0)
      );
      return { ...e, samples: { ...e.samples, errors_per_s: errors } };
    })
  };
}

/** The traffic split over time, one series per entity, as percentages. */
export function alignTraffic(history: History, entities: string[]): Aligned {
  const t = history.traffic;
  return [
    t.timestamp_ms.map(ms => ms / 1000),
    ...entities.map(name => t[name] ?? t.timestamp_ms.map(() => null))
  ];
}

export interface Latest {
  requestsPerS: number | null;
  p99Ms: number | null;
  errorsPerS: number | null;
  readyReplicas: number | null;
}

function last(values: (number | null)[] | undefined): number | null {
  return values && values.length ? values[values.length - 1] : null;
}

/** The endpoint's latest sample summed (rates, replicas) or maxed (p99) over its entities. */
export function latest(history: History | null): Latest {
  const entities = history?.served_entities ?? [];
  if (entities.length === 0) {
    return { requestsPerS: null, p99Ms: null, errorsPerS: null, readyReplicas: null };
  }
  const total = (metric: string): number =>
    entities.reduce((sum, e) => sum + (last(e.samples[metric]) ?? 0), 0);
  const p99s = entities
    .map(e => last(e.samples.latency_p99_ms))
    .filter((v): v is number => v !== null);
  return {
    requestsPerS: total('requests_per_s'),
    p99Ms: p99s.length ? Math.max(...p99s) : null,
    errorsPerS: total('requests_4xx_per_s') + total('requests_5xx_per_s'),
    readyReplicas: total('ready_replicas')
  };
}

export function formatRate(value: number | null): string {
  if (value === null) {
    return '–';
  }
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

export function formatMs(value: number | null): string {
  if (value === null) {
    return '–';
  }
  return value >= 1000
    ? `${(value / 1000).toFixed(2)} s`
    : `${value.toFixed(value >= 10 ? 0 : 1)} ms`;
}

/**
 * A latency from the inference table, which stores whole milliseconds (Databricks' schema): 0 there
 * means under a millisecond, so it reads "< 1 ms", never a false "0.0 ms".
 */
export function formatTableMs(value: number | null | undefined): string {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return '–';
  }
  if (value < 1) {
    return '< 1 ms';
  }
  return Number.isInteger(value) && value < 1000 ? `${value} ms` : formatMs(value);
}

/** A time of day, 24-hour (HH:MM:SS) like the charts, whatever the browser's locale prefers. */
export function formatClock(timestampMs: number): string {
  return new Date(timestampMs).toLocaleTimeString([], {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false
  });
}

/** "12 s ago", "5 min ago", or the date for anything older than a day. */
export function formatAgo(timestampMs: number | undefined, nowMs: number): string {
  if (!timestampMs) {
    return '–';
  }
  const s = Math.max(0, Math.round((nowMs - timestampMs) / 1000));
  if (s < 60) {
    return `${s} s ago`;
  }
  if (s < 3600) {
    return `${Math.round(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.round(s / 3600)} h ago`;
  }
  return new Date(timestampMs).toISOString().slice(0, 10);
}

/** Events oldest first, with a polled delta appended once (no duplicates), at most `limit`. */
export function mergeEvents(
  previous: ServingEvent[],
  delta: ServingEvent[],
  limit = 500
): ServingEvent[] {
  const key = (e: ServingEvent): string =>
    `${e.timestamp_ms}|${e.type}|${e.served_entity ?? ''}|${e.message}`;
  const seen = new Set(previous.map(key));
  const merged = [...previous, ...delta.filter(e => !seen.has(key(e)))];
  merged.sort((a, b) => a.timestamp_ms - b.timestamp_ms);
  return merged.slice(-limit);
}
