/**
 * Progressive delivery, shadow traffic and the live A/B verdict as the page shows them: the wire
 * types of `.../rollout`, `.../shadow/comparison` and `.../verdict` (server/openapi.yaml), and the
 * pure formatting the views use (unit-tested without a browser).
 */

export type RolloutStateName = 'RUNNING' | 'PAUSED' | 'SUCCEEDED' | 'ROLLED_BACK' | 'CANCELED';

/** One always-valid interval of the guard (policy/guard.py) or the verdict (policy/verdict.py). */
export interface GuardInterval {
  name: string;
  label?: string;
  estimate: number | null;
  lower: number | null;
  upper: number | null;
  threshold: number;
  breached: boolean;
  direction?: VerdictWord;
}

export interface TimelineEvent {
  timestamp_ms: number;
  type: string;
  message: string;
  severity: string;
  rollout_step?: number | null;
}

export interface RolloutState {
  to: string;
  from: string[];
  steps: number[];
  step_duration_s: number;
  state: RolloutStateName | string;
  step_index: number;
  step: number;
  step_elapsed_s: number;
  reason: string | null;
  estimate: { decision: string; reason: string | null; guards: GuardInterval[] } | null;
  started_ms: number;
  updated_ms: number;
  timeline: TimelineEvent[];
  requests?: Record<string, { requests: number; errors: number }>;
}

export interface RolloutRequest {
  to: string;
  steps: number[];
  step_duration_s: number;
}

export interface ShadowConfig {
  served_entity_name: string;
  percentage: number;
}

export interface ShadowComparisonRow {
  shadow_entity: string;
  live_entity: string;
  requests: number;
  agreement: number | null;
  agreement_ci_low: number | null;
  agreement_ci_high: number | null;
  live_errors: number;
  shadow_errors: number;
  live_latency_p50_ms: number | null;
  shadow_latency_p50_ms: number | null;
  live_latency_p95_ms: number | null;
  shadow_latency_p95_ms: number | null;
  latency_ratio_p50: number | null;
}

export interface ShadowComparison {
  shadow: ShadowConfig | null;
  queued: number;
  counters: { requests: number; errors: number; dropped: Record<string, number> };
  path: string | null;
  comparison: ShadowComparisonRow[] | null;
  message?: string | null;
}

export type VerdictWord = 'no_data' | 'no_difference_yet' | 'worse' | 'better';

export interface EntityVerdict {
  served_entity_name: string;
  control: string;
  verdict: VerdictWord;
  summary: string;
  requests: number;
  errors: number;
  control_requests: number;
  control_errors: number;
  guards: GuardInterval[];
}

export interface LiveVerdict {
  control: string | null;
  alpha: number;
  method: string;
  entities: {
    served_entity_name: string;
    traffic_percentage: number;
    requests: number;
    errors: number;
  }[];
  comparisons: EntityVerdict[];
}

const VERDICT_LABELS: Record<VerdictWord, string> = {
  no_data: 'no data yet',
  no_difference_yet: 'no difference yet',
  worse: 'worse',
  better: 'better'
};

/** "B worse", "B better", "no difference yet": the headline of one comparison. */
export function verdictHeadline(v: EntityVerdict): string {
  if (v.verdict === 'worse' || v.verdict === 'better') {
    return `${v.served_entity_name} ${VERDICT_LABELS[v.verdict]} than ${v.control}`;
  }
  return `${v.served_entity_name} vs ${v.control}: ${VERDICT_LABELS[v.verdict] ?? v.verdict}`;
}

export function verdictLabel(word: string): string {
  return VERDICT_LABELS[word as VerdictWord] ?? word;
}

/** Differences of two rates (errors, and the quality guard's accuracy): shown as percentages. */
const isRate = (g: GuardInterval): boolean =>
  g.name.startsWith('error_rate') || g.name.startsWith('quality_accuracy');
/** A difference in the label's units (the quality guard's mean absolute error): a plain number. */
const isDifference = (g: GuardInterval): boolean => g.name.startsWith('quality_mae');

function signed(x: number): string {
  return `${x > 0 ? '+' : ''}${x.toPrecision(3)}`;
}

/** A guard's point estimate: a signed percentage for an error-rate difference, a ratio otherwise. */
export function formatEstimate(g: GuardInterval): string {
  if (g.estimate === null || g.estimate === undefined) {
    return '–';
  }
  if (isDifference(g)) {
    return signed(g.estimate);
  }
  return isRate(g) ? signedPercent(g.estimate) : `${g.estimate.toFixed(2)}×`;
}

/** "[lower, upper]"; an unbounded end (null) reads ∞ (or −∞ for a rate's lower end). */
export function formatInterval(g: GuardInterval): string {
  if (isRate(g) || isDifference(g)) {
    const format = isRate(g) ? signedPercent : signed;
    const lo = g.lower === null ? '−∞' : format(g.lower);
    const hi = g.upper === null ? '∞' : format(g.upper);
    return `[${lo}, ${hi}]`;
  }
  const lo = g.lower === null ? '0' : g.lower.toFixed(2);
  const hi = g.upper === null ? '∞' : g.upper.toFixed(2);
  return `[${lo}, ${hi}]`;
}

export function formatThreshold(g: GuardInterval): string {
  if (isDifference(g)) {
    return signed(g.threshold);
  }
  return isRate(g) ? signedPercent(g.threshold) : `${g.threshold}×`;
}

export function guardLabel(g: GuardInterval): string {
  if (g.label) {
    return g.label;
  }
  const labels: Record<string, string> = {
    error_rate_increase: 'error rate increase',
    latency_p50_ratio: 'latency p50 ratio',
    latency_p99_ratio: 'latency p99 ratio',
    quality_accuracy_decrease: 'accuracy decrease (quality)',
    quality_mae_increase: 'mean absolute error increase (quality)'
  };
  return labels[g.name] ?? g.name.replace(/_/g, ' ');
}

function signedPercent(x: number): string {
  const value = (x * 100).toFixed(2);
  return `${x > 0 ? '+' : ''}${value}%`;
}

/** Where an interval sits on a bar from `min` to `max` (percent of its width), clamped. */
export function intervalBar(
  g: GuardInterval,
  min: number,
  max: number
): { left: number; width: number; mark: number | null; threshold: number } {
  const span = max - min || 1;
  const at = (x: number): number => Math.min(100, Math.max(0, ((x - min) / span) * 100));
  const lo = at(g.lower ?? min);
  const hi = at(g.upper ?? max);
  return {
    left: lo,
    width: Math.max(hi - lo, 0.5),
    mark: g.estimate === null || g.estimate === undefined ? null : at(g.estimate),
    threshold: at(g.threshold)
  };
}

/** The bar's range for a guard: symmetric around "no difference", wide enough for the interval. */
export function barRange(g: GuardInterval): [number, number] {
  if (isDifference(g)) {
    const reach = Math.max(
      Math.abs(g.lower ?? 0),
      Math.abs(g.upper ?? 0),
      Math.abs(g.threshold) * 2,
      1e-9
    );
    return [-reach * 1.15, reach * 1.15];
  }
  if (isRate(g)) {
    const reach = Math.max(
      0.05,
      Math.abs(g.lower ?? 0),
      Math.abs(g.upper ?? 0),
      Math.abs(g.threshold) * 2
    );
    const edge = Math.min(reach * 1.15, 1); // room either side of the interval's ends
    return [-edge, edge];
  }
  const hi = Math.min(Math.max(2, (g.upper ?? 0) * 1.1, g.threshold * 1.5), 10);
  return [0, hi];
}

/** Each step of a rollout with whether it is done, current or to come. */
export function rolloutSteps(
  r: RolloutState
): { percent: number; status: 'done' | 'current' | 'next' | 'skipped' }[] {
  const ended = r.state === 'ROLLED_BACK' || r.state === 'CANCELED';
  return r.steps.map((percent, i) => ({
    percent,
    status:
      i < r.step_index || (i === r.step_index && r.state === 'SUCCEEDED')
        ? 'done'
        : i === r.step_index
          ? 'current'
          : ended
            ? 'skipped'
            : 'next'
  }));
}

export function isActiveRollout(r: RolloutState | null): boolean {
  return !!r && (r.state === 'RUNNING' || r.state === 'PAUSED');
}

/** Parse "5, 25, 50, 100" into increasing percentages ending at 100, or say what is wrong. */
export function parseSteps(text: string): number[] | string {
  const parts = text
    .split(/[,\s]+/)
    .map(s => s.trim())
    .filter(s => s);
  const steps = parts.map(Number);
  if (!steps.length || steps.some(s => !Number.isInteger(s) || s <= 0 || s > 100)) {
    return 'Steps are whole percentages from 1 to 100, e.g. 5, 25, 50, 100.';
  }
  if (steps.some((s, i) => i > 0 && s <= steps[i - 1])) {
    return 'Steps must increase.';
  }
  if (steps[steps.length - 1] !== 100) {
    return 'The last step must be 100.';
  }
  return steps;
}
