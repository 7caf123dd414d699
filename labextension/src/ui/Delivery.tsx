/**
 * Trying a challenger on real traffic, on an endpoint's page: the rollout timeline (steps, each
 * decision, the guard's estimate and always-valid interval, pause / resume / cancel), the shadow
 * view (mirror a share of live requests, compare the answers) and the Overview's live A/B verdict.
 * All of it reads the server's JSON routes (delivery.ts); nothing here computes statistics.
 */

import * as React from 'react';

import type { ServingClient } from '../client';
import {
  barRange,
  EntityVerdict,
  formatEstimate,
  formatInterval,
  formatThreshold,
  GuardInterval,
  guardLabel,
  intervalBar,
  isActiveRollout,
  LiveVerdict,
  parseSteps,
  RolloutState,
  rolloutSteps,
  ShadowComparison,
  verdictHeadline,
  verdictLabel
} from '../delivery';
import { errorMessage } from '../errors';
import { formatClock, formatTableMs } from '../history';
import type { Endpoint, ServedEntity } from '../types';
import { Button, ErrorBanner } from './common';
import { usePoll } from './usePoll';

const POLL_MS = 2000;
const SHADOW_POLL_MS = 3000;

function entityNames(endpoint: Endpoint | null): string[] {
  const config = endpoint?.config;
  const entities: ServedEntity[] = config?.served_entities ?? config?.served_models ?? [];
  return entities.map(e => e.name ?? e.entity_name);
}

function splitOf(endpoint: Endpoint | null): Record<string, number> {
  const split: Record<string, number> = {};
  for (const r of endpoint?.config?.traffic_config?.routes ?? []) {
    split[r.served_model_name] = r.traffic_percentage;
  }
  return split;
}

// ---------------------------------------------------------------- shared: one guard interval
/** A guard's interval as a bar, with the estimate's mark and the threshold's line. */
function GuardBar({ guard }: { guard: GuardInterval }): JSX.Element {
  const [min, max] = barRange(guard);
  const bar = intervalBar(guard, min, max);
  const tone =
    guard.breached || guard.direction === 'worse'
      ? 'worse'
      : guard.direction === 'better'
        ? 'better'
        : 'open';
  return (
    <div
      className="jp-serving-interval"
      title={`${formatInterval(guard)} (threshold ${formatThreshold(guard)})`}
    >
      <div
        className={`jp-serving-interval-range jp-serving-interval-${tone}`}
        style={{ left: `${bar.left}%`, width: `${bar.width}%` }}
      />
      <div className="jp-serving-interval-threshold" style={{ left: `${bar.threshold}%` }} />
      {bar.mark !== null && (
        <div className="jp-serving-interval-mark" style={{ left: `${bar.mark}%` }} />
      )}
    </div>
  );
}

function GuardTable({
  guards,
  thresholdTitle
}: {
  guards: GuardInterval[];
  thresholdTitle: string;
}): JSX.Element {
  return (
    <table className="jp-serving-grid jp-serving-guards">
      <thead>
        <tr>
          <th>Guard</th>
          <th className="jp-serving-num">Estimate</th>
          <th className="jp-serving-num">Always-valid interval</th>
          <th className="jp-serving-num">{thresholdTitle}</th>
          <th className="jp-serving-interval-cell">Interval</th>
          <th />
        </tr>
      </thead>
      <tbody>
        {guards.map(g => (
          <tr
            key={g.name}
            data-guard={g.name}
            data-direction={g.direction ?? (g.breached ? 'breached' : 'open')}
          >
            <td>{guardLabel(g)}</td>
            <td className="jp-serving-num" data-estimate>
              {formatEstimate(g)}
            </td>
            <td className="jp-serving-num" data-interval>
              {formatInterval(g)}
            </td>
            <td className="jp-serving-num">{formatThreshold(g)}</td>
            <td className="jp-serving-interval-cell">
              <GuardBar guard={g} />
            </td>
            <td>
              {g.direction ? (
                // The verdict's reading (worse / better / no difference yet), not the guard's breach.
                <span className={`jp-serving-verdict-word jp-serving-verdict-${g.direction}`}>
                  {verdictLabel(g.direction)}
                </span>
              ) : g.breached ? (
                <span className="jp-serving-severity jp-serving-severity-error">breached</span>
              ) : null}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// ---------------------------------------------------------------- Overview: the live verdict
export function LiveVerdictView(props: {
  client: ServingClient;
  name: string;
  isVisible: () => boolean;
}): JSX.Element | null {
  const [verdict, setVerdict] = React.useState<LiveVerdict | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  usePoll(
    async () => {
      try {
        setVerdict(await props.client.verdict(props.name));
        setError(null);
      } catch (err) {
        setError(errorMessage(err));
      }
    },
    POLL_MS,
    props.isVisible,
    [props.name]
  );
  if (error) {
    return <ErrorBanner message={error} />;
  }
  if (!verdict || verdict.comparisons.length === 0) {
    return null; // one entity takes the traffic: nothing to compare
  }
  return (
    <div className="jp-serving-live-verdict" data-live-verdict>
      <div className="jp-serving-section-title">
        Live A/B verdict{' '}
        <span className="jp-serving-hint">against {verdict.control} (control)</span>
      </div>
      {verdict.comparisons.map(c => (
        <VerdictCard key={c.served_entity_name} verdict={c} />
      ))}
      <div className="jp-serving-hint">
        {Math.round((1 - verdict.alpha) * 100)}% always-valid intervals, as the rollout guard uses:
        safe to watch continuously (the chance that two equal entities are ever called different is
        at most {verdict.alpha}). Counted since the server started.
      </div>
    </div>
  );
}

function VerdictCard({ verdict }: { verdict: EntityVerdict }): JSX.Element {
  return (
    <div
      className={`jp-serving-verdict-card jp-serving-verdict-card-${verdict.verdict}`}
      data-entity={verdict.served_entity_name}
      data-verdict-word={verdict.verdict}
    >
      <div className="jp-serving-verdict-headline">
        <span className={`jp-serving-verdict-word jp-serving-verdict-${verdict.verdict}`}>
          {verdictLabel(verdict.verdict)}
        </span>{' '}
        {verdictHeadline(verdict)}
        <span className="jp-serving-hint">
          {' '}
          · {verdict.requests} requests ({verdict.errors} errors) vs {verdict.control_requests} (
          {verdict.control_errors} errors)
        </span>
      </div>
      <div className="jp-serving-verdict-summary">{verdict.summary}</div>
      {verdict.guards.length > 0 && (
        <GuardTable guards={verdict.guards} thresholdTitle="No difference at" />
      )}
    </div>
  );
}

// ---------------------------------------------------------------- rollout timeline
export function RolloutView(props: {
  client: ServingClient;
  name: string;
  endpoint: Endpoint | null;
  isVisible: () => boolean;
}): JSX.Element {
  const [rollout, setRollout] = React.useState<RolloutState | null | undefined>(undefined);
  const [error, setError] = React.useState<string | null>(null);
  const refresh = usePoll(
    async () => {
      try {
        setRollout(await props.client.rollout(props.name));
        setError(null);
      } catch (err) {
        setError(errorMessage(err));
      }
    },
    POLL_MS,
    props.isVisible,
    [props.name]
  );
  const act = async (action: () => Promise<unknown>): Promise<void> => {
    try {
      await action();
      setError(null);
    } catch (err) {
      setError(errorMessage(err));
    }
    await refresh();
  };
  if (rollout === undefined) {
    return error ? (
      <ErrorBanner message={error} />
    ) : (
      <div className="jp-serving-hint">Loading…</div>
    );
  }
  return (
    <div className="jp-serving-rollout-view">
      <ErrorBanner message={error} />
      {rollout && (
        <RolloutTimeline
          rollout={rollout}
          onAction={action => void act(() => props.client.rolloutAction(props.name, action))}
        />
      )}
      {!isActiveRollout(rollout) && (
        <StartRollout
          endpoint={props.endpoint}
          again={!!rollout}
          onStart={request => act(() => props.client.startRollout(props.name, request))}
        />
      )}
    </div>
  );
}

function RolloutTimeline({
  rollout,
  onAction
}: {
  rollout: RolloutState;
  onAction: (action: 'pause' | 'resume' | 'cancel') => void;
}): JSX.Element {
  const active = isActiveRollout(rollout);
  const guards = rollout.estimate?.guards ?? [];
  const left = Math.max(0, rollout.step_duration_s - rollout.step_elapsed_s);
  return (
    <div
      className="jp-serving-rollout"
      data-rollout-state={rollout.state}
      data-rollout-step={rollout.step}
    >
      <div className="jp-serving-page-toolbar">
        <span
          className={`jp-serving-rollout-state jp-serving-rollout-${rollout.state.toLowerCase()}`}
        >
          {rollout.state.replace('_', ' ').toLowerCase()}
        </span>
        <span>
          Rollout to <b>{rollout.to}</b> from {rollout.from.join(', ')} · {rollout.step}% now
          {rollout.state === 'RUNNING' ? ` · next step in ${Math.ceil(left)} s` : ''}
        </span>
        <span className="jp-serving-toolbar-spacer" />
        {rollout.state === 'RUNNING' && (
          <Button name="rollout-pause" onClick={() => onAction('pause')}>
            Pause
          </Button>
        )}
        {rollout.state === 'PAUSED' && (
          <Button name="rollout-resume" accent="primary" onClick={() => onAction('resume')}>
            Resume
          </Button>
        )}
        {active && (
          <Button name="rollout-cancel" accent="warn" onClick={() => onAction('cancel')}>
            Cancel
          </Button>
        )}
      </div>
      <ol className="jp-serving-rollout-steps" aria-label="rollout steps">
        {rolloutSteps(rollout).map(s => (
          <li
            key={s.percent}
            className={`jp-serving-rollout-step jp-serving-rollout-step-${s.status}`}
            data-step={s.percent}
            data-status={s.status}
          >
            {s.percent}%
          </li>
        ))}
      </ol>
      {rollout.reason && (
        <div
          className={`jp-serving-callout jp-serving-callout-${rollout.state === 'ROLLED_BACK' ? 'error' : 'info'}`}
          data-rollout-reason
        >
          {rollout.state === 'ROLLED_BACK' ? 'Rolled back: ' : ''}
          {rollout.reason}
        </div>
      )}
      {guards.length > 0 && (
        <>
          <div className="jp-serving-section-title">
            Guard{' '}
            <span className="jp-serving-hint">
              (challenger against control since the rollout began)
            </span>
          </div>
          <GuardTable guards={guards} thresholdTitle="Rolls back above" />
        </>
      )}
      {rollout.requests && Object.keys(rollout.requests).length > 0 && (
        <div className="jp-serving-hint" data-rollout-requests>
          {Object.entries(rollout.requests)
            .map(([arm, c]) => `${arm}: ${c.requests} requests, ${c.errors} errors`)
            .join(' · ')}
        </div>
      )}
      <div className="jp-serving-section-title">Timeline</div>
      <ol className="jp-serving-timeline">
        {rollout.timeline.map((e, i) => (
          <li
            key={`${e.timestamp_ms}-${e.type}-${i}`}
            className={`jp-serving-timeline-item jp-serving-event-${e.severity.toLowerCase()}`}
            data-event={e.type}
          >
            <span className="jp-serving-timeline-dot" />
            <span className="jp-serving-nowrap jp-serving-hint">{formatClock(e.timestamp_ms)}</span>
            <span className={`jp-serving-severity jp-serving-severity-${e.severity.toLowerCase()}`}>
              {e.type
                .replace(/^ROLLOUT_/, '')
                .replace(/_/g, ' ')
                .toLowerCase()}
            </span>
            {e.rollout_step !== undefined && e.rollout_step !== null && (
              <span className="jp-serving-chip">{e.rollout_step}%</span>
            )}
            <span className="jp-serving-event-message">{e.message}</span>
          </li>
        ))}
      </ol>
    </div>
  );
}

function StartRollout(props: {
  endpoint: Endpoint | null;
  again: boolean;
  onStart: (request: { to: string; steps: number[]; step_duration_s: number }) => Promise<void>;
}): JSX.Element {
  const split = splitOf(props.endpoint);
  const names = entityNames(props.endpoint);
  const candidates = names.filter(n => (split[n] ?? 0) < 100);
  const [to, setTo] = React.useState('');
  const [steps, setSteps] = React.useState('5, 25, 50, 100');
  const [duration, setDuration] = React.useState('60');
  const [problem, setProblem] = React.useState<string | null>(null);
  const chosen =
    (candidates.includes(to) && to) || candidates.find(n => !split[n]) || candidates[0] || '';
  const start = async (): Promise<void> => {
    const parsed = parseSteps(steps);
    const seconds = Number(duration);
    if (typeof parsed === 'string') {
      setProblem(parsed);
    } else if (!(seconds > 0)) {
      setProblem('The step duration is a number of seconds above 0.');
    } else if (!chosen) {
      setProblem('The endpoint needs a second served entity to roll out to.');
    } else {
      setProblem(null);
      await props.onStart({ to: chosen, steps: parsed, step_duration_s: seconds });
    }
  };
  return (
    <form
      className="jp-serving-rollout-start"
      onSubmit={e => {
        e.preventDefault();
        void start();
      }}
    >
      <div className="jp-serving-section-title">
        {props.again ? 'Start another rollout' : 'Start a rollout'}
      </div>
      <div className="jp-serving-hint">
        Moves traffic to the challenger step by step; the error-rate and latency guards watch every
        answer and roll back at once on a breach.
      </div>
      <div className="jp-serving-inline-form">
        <label>
          To{' '}
          <select
            className="jp-mod-styled"
            name="rollout-to"
            value={chosen}
            onChange={e => setTo(e.target.value)}
          >
            {candidates.map(n => (
              <option key={n} value={n}>
                {n} ({split[n] ?? 0}% now)
              </option>
            ))}
          </select>
        </label>
        <label>
          Steps (%){' '}
          <input
            className="jp-mod-styled"
            name="rollout-steps"
            value={steps}
            onChange={e => setSteps(e.target.value)}
          />
        </label>
        <label>
          Seconds per step{' '}
          <input
            className="jp-mod-styled"
            name="rollout-step-duration"
            type="number"
            min="1"
            value={duration}
            onChange={e => setDuration(e.target.value)}
          />
        </label>
        <Button name="rollout-start" accent="primary" type="submit">
          Start rollout
        </Button>
      </div>
      {problem && (
        <div className="jp-serving-field-error" role="alert">
          {problem}
        </div>
      )}
    </form>
  );
}

// ---------------------------------------------------------------- shadow traffic
export function ShadowView(props: {
  client: ServingClient;
  name: string;
  endpoint: Endpoint | null;
  isVisible: () => boolean;
}): JSX.Element {
  const [view, setView] = React.useState<ShadowComparison | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const refresh = usePoll(
    async () => {
      try {
        setView(await props.client.shadowComparison(props.name));
        setError(null);
      } catch (err) {
        setError(errorMessage(err));
      }
    },
    SHADOW_POLL_MS,
    props.isVisible,
    [props.name]
  );
  const act = async (action: () => Promise<unknown>): Promise<void> => {
    try {
      await action();
      setError(null);
    } catch (err) {
      setError(errorMessage(err));
    }
    await refresh();
  };
  const split = splitOf(props.endpoint);
  const idle = entityNames(props.endpoint).filter(n => !split[n]);
  const current = view?.shadow ?? null;
  const [entity, setEntity] = React.useState('');
  const [percentage, setPercentage] = React.useState('');
  const chosen = (idle.includes(entity) && entity) || current?.served_entity_name || idle[0] || '';
  const share = percentage || String(current?.percentage ?? 20);
  return (
    <div className="jp-serving-shadow-view" data-shadow={current ? current.served_entity_name : ''}>
      <ErrorBanner message={error} />
      <div className="jp-serving-section-title">Shadow traffic</div>
      <div className="jp-serving-hint">
        Mirrors a share of the live requests to a served entity that takes no live traffic. Clients
        always get the live answer; the shadow's answers go to the inference table beside the live
        rows.
      </div>
      <form
        className="jp-serving-inline-form"
        onSubmit={e => {
          e.preventDefault();
          void act(() =>
            props.client.putShadow(props.name, {
              served_entity_name: chosen,
              percentage: Number(share)
            })
          );
        }}
      >
        <label>
          Shadow entity{' '}
          <select
            className="jp-mod-styled"
            name="shadow-entity"
            value={chosen}
            onChange={e => setEntity(e.target.value)}
          >
            {idle.length === 0 && <option value="">(no entity with 0% traffic)</option>}
            {idle.map(n => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
        <label>
          Mirrored %{' '}
          <input
            className="jp-mod-styled"
            name="shadow-percentage"
            type="number"
            min="0"
            max="100"
            value={share}
            onChange={e => setPercentage(e.target.value)}
          />
        </label>
        <Button name="shadow-save" accent="primary" type="submit" disabled={!chosen}>
          {current ? 'Update shadow' : 'Start shadow'}
        </Button>
        {current && (
          <Button
            name="shadow-stop"
            accent="warn"
            onClick={() => void act(() => props.client.deleteShadow(props.name))}
          >
            Stop
          </Button>
        )}
      </form>
      {view && (
        <div className="jp-serving-hint" data-shadow-counters>
          {current
            ? `Mirroring ${current.percentage}% of live requests to ${current.served_entity_name}. `
            : 'No shadow now. '}
          Since the server started: {view.counters.requests} mirrored requests answered,{' '}
          {view.counters.errors} failed,{' '}
          {Object.values(view.counters.dropped).reduce((a, b) => a + b, 0)} dropped; {view.queued}{' '}
          queued.
        </div>
      )}
      {view && <ShadowComparisonTable view={view} />}
    </div>
  );
}

function percent(x: number | null): string {
  return x === null ? '–' : `${(x * 100).toFixed(1)}%`;
}

function ShadowComparisonTable({ view }: { view: ShadowComparison }): JSX.Element {
  if (!view.comparison || view.comparison.length === 0) {
    return <div className="jp-serving-empty">{view.message ?? 'Nothing mirrored yet.'}</div>;
  }
  return (
    <>
      <div className="jp-serving-section-title">Live vs shadow on the same requests</div>
      <table className="jp-serving-grid jp-serving-shadow-comparison">
        <thead>
          <tr>
            <th>Shadow</th>
            <th>Live</th>
            <th className="jp-serving-num">Requests</th>
            <th className="jp-serving-num">Agreement</th>
            <th className="jp-serving-num">95% interval</th>
            <th className="jp-serving-num">Live errors</th>
            <th className="jp-serving-num">Shadow errors</th>
            <th className="jp-serving-num">p50 live / shadow</th>
            <th className="jp-serving-num">p95 live / shadow</th>
            <th className="jp-serving-num">p50 ratio</th>
          </tr>
        </thead>
        <tbody>
          {view.comparison.map(r => (
            <tr
              key={r.shadow_entity}
              data-shadow-entity={r.shadow_entity}
              data-agreement={r.agreement ?? ''}
            >
              <td>{r.shadow_entity}</td>
              <td>{r.live_entity}</td>
              <td className="jp-serving-num">{r.requests}</td>
              <td className="jp-serving-num" data-cell="agreement">
                {percent(r.agreement)}
              </td>
              <td className="jp-serving-num">
                [{percent(r.agreement_ci_low)}, {percent(r.agreement_ci_high)}]
              </td>
              <td className="jp-serving-num">{r.live_errors}</td>
              <td className="jp-serving-num">{r.shadow_errors}</td>
              <td className="jp-serving-num">
                {formatTableMs(r.live_latency_p50_ms)} / {formatTableMs(r.shadow_latency_p50_ms)}
              </td>
              <td className="jp-serving-num">
                {formatTableMs(r.live_latency_p95_ms)} / {formatTableMs(r.shadow_latency_p95_ms)}
              </td>
              <td className="jp-serving-num">
                {r.latency_ratio_p50 === null ? '–' : `${r.latency_ratio_p50.toFixed(2)}×`}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="jp-serving-hint">
        Agreement: input rows where both answered and every prediction is equal (Wilson interval).
        From the inference table <code>{view.path}</code>.
      </div>
    </>
  );
}
