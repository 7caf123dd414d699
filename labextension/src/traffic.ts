/**
 * Traffic-split arithmetic: integer percentages that always sum to 100.
 *
 * The server rejects splits that do not sum to exactly 100 (as Databricks does), so every edit in the
 * form goes through these functions instead of leaving the user to do the arithmetic.
 */

import type { Route } from './types';

export const TOTAL = 100;

/** `n` integer shares summing to 100; the first ones absorb the remainder (3 → 34, 33, 33). */
export function evenSplit(n: number): number[] {
  return n > 0 ? apportion(new Array<number>(n).fill(1), TOTAL) : [];
}

/** Scale non-negative weights to integers summing to 100; all-zero weights give an even split. */
export function normalise(weights: number[]): number[] {
  return apportion(weights, TOTAL);
}

/**
 * Split `total` into integers proportional to `weights` (largest-remainder rounding, ties to the
 * earlier entity so the result is deterministic). All-zero or invalid weights share it evenly.
 */
export function apportion(weights: number[], total: number): number[] {
  const clean = weights.map(w => (Number.isFinite(w) && w > 0 ? w : 0));
  const weightSum = clean.reduce((a, b) => a + b, 0);
  if (total <= 0) {
    return clean.map(() => 0);
  }
  const basis = weightSum === 0 ? clean.map(() => 1) : clean;
  const basisSum = weightSum === 0 ? clean.length : weightSum;
  const exact = basis.map(w => (w * total) / basisSum);
  const out = exact.map(Math.floor);
  let missing = total - out.reduce((a, b) => a + b, 0);
  const order = exact
    .map((x, i) => ({ i, frac: x - Math.floor(x) }))
    .sort((a, b) => b.frac - a.frac || a.i - b.i);
  for (const { i } of order) {
    if (missing <= 0) {
      break;
    }
    out[i] += 1;
    missing -= 1;
  }
  return out;
}

/**
 * Set entity `index` to `value` (clamped to 0..100) and give the rest to the others in proportion to
 * their current shares, so moving one slider keeps the split valid without touching relative weights.
 */
export function setShare(shares: number[], index: number, value: number): number[] {
  if (index < 0 || index >= shares.length) {
    return shares.slice();
  }
  const v = clampPercent(value);
  if (shares.length === 1) {
    return [TOTAL];
  }
  const others = shares.filter((_, i) => i !== index);
  const rest = apportion(others, TOTAL - v);
  const out: number[] = [];
  let k = 0;
  for (let i = 0; i < shares.length; i++) {
    out.push(i === index ? v : rest[k++]);
  }
  return out;
}

export function sum(shares: number[]): number {
  return shares.reduce((a, b) => a + b, 0);
}

export function clampPercent(value: number): number {
  if (!Number.isFinite(value)) {
    return 0;
  }
  return Math.min(TOTAL, Math.max(0, Math.round(value)));
}

/** One coloured segment of the traffic bar. */
export interface Segment {
  name: string;
  percentage: number;
  /** Index into the palette, stable per served entity position. */
  colour: number;
}

/**
 * Segments for the traffic bar, ordered as the served entities are; routes naming unknown entities
 * are still shown (the server is the authority on what exists).
 */
export function trafficSegments(routes: Route[], entityNames: string[]): Segment[] {
  const position = (name: string): number => {
    const i = entityNames.indexOf(name);
    return i === -1 ? entityNames.length + routes.findIndex(r => r.served_model_name === name) : i;
  };
  return routes
    .map(r => ({
      name: r.served_model_name,
      percentage: clampPercent(r.traffic_percentage),
      colour: position(r.served_model_name)
    }))
    .sort((a, b) => a.colour - b.colour);
}
