import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  barRange,
  EntityVerdict,
  formatEstimate,
  formatInterval,
  GuardInterval,
  intervalBar,
  isActiveRollout,
  parseSteps,
  RolloutState,
  rolloutSteps,
  verdictHeadline
} from '../src/delivery';

const rate: GuardInterval = {
  name: 'error_rate_increase',
  estimate: 0.05,
  lower: 0.012,
  upper: 0.09,
  threshold: 0,
  breached: true
};
const p50: GuardInterval = {
  name: 'latency_p50_ratio',
  estimate: 1.02,
  lower: 0.8,
  upper: null,
  threshold: 1.5,
  breached: false
};

function rollout(state: string, stepIndex: number): RolloutState {
  return {
    to: 'challenger',
    from: ['current'],
    steps: [5, 25, 50, 100],
    step_duration_s: 60,
    state,
    step_index: stepIndex,
    step: [5, 25, 50, 100][stepIndex],
    step_elapsed_s: 0,
    reason: null,
    estimate: null,
    started_ms: 0,
    updated_ms: 0,
    timeline: []
  };
}

describe('guard intervals', () => {
  it('formats a rate difference as signed percentages and a ratio with ×', () => {
    assert.equal(formatEstimate(rate), '+5.00%');
    assert.equal(formatInterval(rate), '[+1.20%, +9.00%]');
    assert.equal(formatEstimate(p50), '1.02×');
    assert.equal(formatInterval(p50), '[0.80, ∞]');
    assert.equal(formatEstimate({ ...p50, estimate: null }), '–');
    // The quality guard (when a rollout has one): accuracy as a rate, mean absolute error as a number.
    const accuracy = { ...rate, name: 'quality_accuracy_decrease', estimate: 0.1 };
    assert.equal(formatEstimate(accuracy), '+10.00%');
    const mae = { ...rate, name: 'quality_mae_increase', estimate: 0.25, lower: -0.5, upper: 1.5 };
    assert.equal(formatEstimate(mae), '+0.250');
    assert.equal(formatInterval(mae), '[-0.500, +1.50]');
  });

  it('places the interval, the estimate and the threshold on a bar', () => {
    const [min, max] = barRange(rate);
    assert.ok(min < 0 && max > 0.09);
    const bar = intervalBar(rate, min, max);
    assert.ok(bar.left > 50 && bar.left + bar.width <= 100);
    assert.equal(bar.threshold, 50);
    assert.ok(bar.mark !== null && bar.mark > bar.left && bar.mark < bar.left + bar.width);
    const open = intervalBar(p50, ...barRange(p50));
    assert.equal(open.left + open.width, 100); // unbounded above: to the end of the bar
  });
});

describe('rollout steps', () => {
  it('marks done, current and coming steps', () => {
    assert.deepEqual(
      rolloutSteps(rollout('RUNNING', 1)).map(s => s.status),
      ['done', 'current', 'next', 'next']
    );
    assert.deepEqual(
      rolloutSteps(rollout('ROLLED_BACK', 1)).map(s => s.status),
      ['done', 'current', 'skipped', 'skipped']
    );
    assert.deepEqual(
      rolloutSteps(rollout('SUCCEEDED', 3)).map(s => s.status),
      ['done', 'done', 'done', 'done']
    );
    assert.ok(isActiveRollout(rollout('PAUSED', 0)));
    assert.ok(!isActiveRollout(rollout('CANCELED', 0)) && !isActiveRollout(null));
  });

  it('parses steps or says what is wrong', () => {
    assert.deepEqual(parseSteps('5, 25,50 100'), [5, 25, 50, 100]);
    assert.match(parseSteps('25, 5, 100') as string, /increase/);
    assert.match(parseSteps('5, 25') as string, /100/);
    assert.match(parseSteps('0, 100') as string, /1 to 100/);
    assert.match(parseSteps('') as string, /1 to 100/);
  });
});

describe('verdict headline', () => {
  it('names the entity, the word and the control', () => {
    const v: EntityVerdict = {
      served_entity_name: 'b',
      control: 'a',
      verdict: 'worse',
      summary: '',
      requests: 1,
      errors: 0,
      control_requests: 1,
      control_errors: 0,
      guards: []
    };
    assert.equal(verdictHeadline(v), 'b worse than a');
    assert.equal(
      verdictHeadline({ ...v, verdict: 'no_difference_yet' }),
      'b vs a: no difference yet'
    );
  });
});
