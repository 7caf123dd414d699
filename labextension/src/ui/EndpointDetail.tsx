/**
 * One endpoint's page: live charts of its history and the live A/B verdict (overview), the rollout
 * timeline, the shadow view, events, logs per served entity, the inference table with the A/B
 * comparison, and the query playground, as tabs.
 */

import * as React from 'react';

import { endpointBadges, entityBadge, isUpdating, replicaText } from '../badge';
import type { ServingClient } from '../client';
import { errorMessage } from '../errors';
import {
  alignMetric,
  alignTraffic,
  formatClock,
  formatMs,
  formatTableMs,
  formatRate,
  History,
  InferenceTableView,
  latestMs,
  mergeEvents,
  mergeHistory,
  ServingEvent,
  withErrorRate
} from '../history';
import { queryTargets } from '../playground';
import type { Endpoint, ServedEntity } from '../types';
import { BadgeView, Button, ErrorBanner } from './common';
import { LiveVerdictView, RolloutView, ShadowView } from './Delivery';
import { Playground } from './Playground';
import { TimeChart } from './TimeChart';
import { TrafficBar } from './TrafficBar';
import { usePoll } from './usePoll';

export const TABS = ['overview', 'rollout', 'shadow', 'events', 'logs', 'table', 'query'] as const;
export type Tab = (typeof TABS)[number];
const TAB_LABELS: Record<Tab, string> = {
  overview: 'Overview',
  rollout: 'Rollout',
  shadow: 'Shadow',
  events: 'Events',
  logs: 'Logs',
  table: 'Inference table',
  query: 'Query'
};
const POLL_MS = 2000;
const TABLE_POLL_MS = 5000;

export interface DetailServices {
  client: ServingClient;
  isVisible: () => boolean;
  confirm: (title: string, body: string, accept: string) => Promise<boolean>;
  openInNotebook: (endpoint: Endpoint) => void;
}

export interface EndpointDetailProps {
  services: DetailServices;
  name: string;
  tab: Tab;
  onTab: (tab: Tab) => void;
  onBack: () => void;
  onEdit: (endpoint: Endpoint) => void;
}

function entitiesOf(endpoint: Endpoint | null): ServedEntity[] {
  const config = endpoint?.config ?? endpoint?.pending_config;
  return config?.served_entities ?? config?.served_models ?? [];
}

/** Entity names in palette order: the active config's first, then any the history still holds. */
function chartEntities(endpoint: Endpoint | null, history: History | null): string[] {
  const names = entitiesOf(endpoint).map(e => e.name ?? e.entity_name);
  for (const e of history?.served_entities ?? []) {
    if (!names.includes(e.name)) {
      names.push(e.name);
    }
  }
  return names;
}

export function EndpointDetail(props: EndpointDetailProps): JSX.Element {
  const { client } = props.services;
  const [endpoint, setEndpoint] = React.useState<Endpoint | null>(null);
  const [history, setHistory] = React.useState<History | null>(null);
  const [events, setEvents] = React.useState<ServingEvent[]>([]);
  const [error, setError] = React.useState<string | null>(null);
  // A row's "logs" link: the Logs tab opens on its served entity, filtered to its request id.
  const [logQuery, setLogQuery] = React.useState<LogQuery | null>(null);
  const historyRef = React.useRef<History | null>(null);
  const eventsRef = React.useRef<ServingEvent[]>([]);

  const refresh = usePoll(
    async () => {
      try {
        const since = latestMs(historyRef.current);
        const lastEvent = eventsRef.current.length
          ? eventsRef.current[eventsRef.current.length - 1].timestamp_ms - 1
          : 0;
        const [e, h, ev] = await Promise.all([
          client.getEndpoint(props.name),
          client.history(props.name, since),
          client.events(props.name, lastEvent)
        ]);
        historyRef.current = mergeHistory(historyRef.current, h);
        eventsRef.current = mergeEvents(eventsRef.current, ev);
        setEndpoint(e);
        setHistory(historyRef.current);
        setEvents(eventsRef.current);
        setError(null);
      } catch (err) {
        setError(errorMessage(err));
      }
    },
    POLL_MS,
    props.services.isVisible,
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

  const remove = async (): Promise<void> => {
    const ok = await props.services.confirm(
      'Delete serving endpoint',
      `Delete endpoint "${props.name}"? Its replicas stop and queries to it fail from now on.`,
      'Delete'
    );
    if (ok) {
      try {
        await client.deleteEndpoint(props.name);
        props.onBack();
      } catch (err) {
        setError(errorMessage(err));
      }
    }
  };

  const updating = endpoint ? isUpdating(endpoint) : false;
  return (
    <div className="jp-serving-page-section jp-serving-detail" data-endpoint={props.name}>
      <div className="jp-serving-breadcrumbs">
        <a
          href="#"
          className="jp-serving-link"
          onClick={ev => {
            ev.preventDefault();
            props.onBack();
          }}
        >
          Serving endpoints
        </a>
        <span className="jp-serving-breadcrumb-sep">/</span>
        <span>{props.name}</span>
      </div>
      <div className="jp-serving-page-toolbar">
        <h1 className="jp-serving-page-title">{props.name}</h1>
        <span className="jp-serving-badges">
          {endpoint && endpointBadges(endpoint).map(b => <BadgeView key={b.kind} badge={b} />)}
        </span>
        <span className="jp-serving-toolbar-spacer" />
        {endpoint && (
          <>
            <Button name="edit" disabled={updating} onClick={() => props.onEdit(endpoint)}>
              Edit
            </Button>
            {updating && (
              <Button
                name="cancel-update"
                onClick={() => void act(() => client.cancelUpdate(props.name))}
              >
                Cancel update
              </Button>
            )}
            <Button name="open-in-notebook" onClick={() => props.services.openInNotebook(endpoint)}>
              Notebook
            </Button>
            <Button name="delete" accent="warn" onClick={() => void remove()}>
              Delete
            </Button>
          </>
        )}
      </div>
      <ErrorBanner message={error} />
      <div className="jp-serving-tabs" role="tablist">
        {TABS.map(tab => (
          <button
            key={tab}
            type="button"
            role="tab"
            name={`tab-${tab}`}
            aria-selected={props.tab === tab}
            className={`jp-serving-tab${props.tab === tab ? ' jp-mod-current' : ''}`}
            onClick={() => {
              setLogQuery(null); // the tab bar opens the Logs tab unfiltered
              props.onTab(tab);
            }}
          >
            {TAB_LABELS[tab]}
            {tab === 'events' && events.some(e => e.severity === 'ERROR') ? (
              <span className="jp-serving-tab-dot" title="There are errors among the events" />
            ) : null}
          </button>
        ))}
      </div>
      <div className="jp-serving-tab-body" role="tabpanel" data-tab={props.tab}>
        {props.tab === 'overview' && (
          <>
            <LiveVerdictView
              client={client}
              name={props.name}
              isVisible={props.services.isVisible}
            />
            <Overview endpoint={endpoint} history={history} />
          </>
        )}
        {props.tab === 'rollout' && (
          <RolloutView
            client={client}
            name={props.name}
            endpoint={endpoint}
            isVisible={props.services.isVisible}
          />
        )}
        {props.tab === 'shadow' && (
          <ShadowView
            client={client}
            name={props.name}
            endpoint={endpoint}
            isVisible={props.services.isVisible}
          />
        )}
        {props.tab === 'events' && <EventsView events={events} />}
        {props.tab === 'logs' && (
          <LogsView
            client={client}
            endpoint={endpoint}
            name={props.name}
            isVisible={props.services.isVisible}
            initial={logQuery}
          />
        )}
        {props.tab === 'table' && (
          <TableView
            client={client}
            name={props.name}
            isVisible={props.services.isVisible}
            onLogs={query => {
              setLogQuery(query);
              props.onTab('logs');
            }}
          />
        )}
        {props.tab === 'query' &&
          (endpoint ? (
            <Playground client={client} endpoint={props.name} targets={queryTargets(endpoint)} />
          ) : (
            <div className="jp-serving-hint">Loading…</div>
          ))}
      </div>
    </div>
  );
}

// ---------------------------------------------------------------- overview
const mib = (bytes: number): number => bytes / 2 ** 20;

/** The charts' time windows (seconds); "all" is whatever the server keeps. */
const RANGES: Record<string, number> = { '15 min': 900, '1 h': 3600, all: Infinity };

function Overview({
  endpoint,
  history
}: {
  endpoint: Endpoint | null;
  history: History | null;
}): JSX.Element {
  const [range, onRange] = React.useState('15 min');
  const names = chartEntities(endpoint, history);
  const data = history ? withErrorRate(history) : null;
  const chart = (
    title: string,
    metric: string,
    unit: string,
    format: (v: number) => string,
    extra: Partial<React.ComponentProps<typeof TimeChart>> = {},
    transform?: (v: number) => number
  ): JSX.Element => (
    <TimeChart
      title={title}
      unit={unit}
      labels={names}
      data={data ? alignMetric(data, metric, names, transform) : [[], ...names.map(() => [])]}
      format={format}
      xRange={xRange}
      {...extra}
    />
  );
  const routes = endpoint?.config?.traffic_config?.routes ?? [];
  const times = history?.traffic.timestamp_ms ?? [];
  const xRange: [number, number] | null = times.length
    ? [
        Math.max(times[0] / 1000, times[times.length - 1] / 1000 - (RANGES[range] ?? Infinity)),
        times[times.length - 1] / 1000
      ]
    : null;
  return (
    <>
      <EntitySummary endpoint={endpoint} />
      {endpoint?.pending_config && (
        <div
          className={`jp-serving-callout jp-serving-callout-${isUpdating(endpoint) ? 'info' : 'error'}`}
        >
          {isUpdating(endpoint) ? 'Updating' : 'The last update did not apply'}: config version{' '}
          {endpoint.pending_config.config_version ?? '?'} with{' '}
          {entitiesOf({ ...endpoint, config: endpoint.pending_config })
            .map(e => e.name)
            .join(', ')}
          {entitiesOf({ ...endpoint, config: endpoint.pending_config })
            .map(e => e.state?.deployment_state_message)
            .filter(m => !!m)
            .map(m => (
              <div key={m} className="jp-serving-callout-detail">
                {m}
              </div>
            ))}
        </div>
      )}
      {routes.length > 0 && (
        <div className="jp-serving-overview-traffic">
          <div className="jp-serving-section-title">Traffic split</div>
          <TrafficBar routes={routes} entityNames={names} />
        </div>
      )}
      <div className="jp-serving-chart-range">
        Time range{' '}
        <select
          className="jp-mod-styled"
          name="time-range"
          style={{ width: 'auto', flex: '0 0 auto' }}
          value={range}
          onChange={e => onRange(e.target.value)}
        >
          {Object.keys(RANGES).map(r => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </select>
      </div>
      <div className="jp-serving-charts">
        {chart('Requests', 'requests_per_s', 'per second', formatRate)}
        {chart('Latency p99', 'latency_p99_ms', 'ms', v => formatMs(v))}
        {chart('Latency p50', 'latency_p50_ms', 'ms', v => formatMs(v))}
        {chart('Client errors', 'requests_4xx_per_s', '4xx per second', formatRate)}
        {chart('Server errors', 'requests_5xx_per_s', '5xx per second', formatRate)}
        {chart('Ready replicas', 'ready_replicas', 'count', v => v.toFixed(0), {
          stepped: true,
          integer: true
        })}
        <TimeChart
          title="Traffic split"
          unit="%"
          labels={names}
          data={history ? alignTraffic(history, names) : [[], ...names.map(() => [])]}
          format={v => `${v.toFixed(0)}%`}
          stepped
          xRange={xRange}
          yRange={[0, 100]}
        />
        {chart(
          'CPU',
          'cpu_percent',
          '% of one core, all replicas',
          v => `${v.toFixed(v < 10 ? 1 : 0)}%`
        )}
        {chart(
          'Memory',
          'memory_bytes',
          'MiB PSS (shared pages split), all replicas',
          v => v.toFixed(0),
          {},
          mib
        )}
        {chart('Queued requests', 'queued_requests', 'waiting for a replica', v => v.toFixed(0), {
          integer: true
        })}
        {chart('Batch size', 'batch_size_mean', 'mean requests per predict', v => v.toFixed(1))}
      </div>
      {history && (
        <div className="jp-serving-hint">
          Sampled every {history.interval_s} s; the last {Math.round(history.retention_s / 60)}{' '}
          minutes are kept.
        </div>
      )}
    </>
  );
}

function EntitySummary({ endpoint }: { endpoint: Endpoint | null }): JSX.Element {
  const entities = endpoint?.config?.served_entities ?? endpoint?.config?.served_models ?? [];
  if (!endpoint) {
    return <div className="jp-serving-hint">Loading…</div>;
  }
  return (
    <div className="jp-serving-entity-cards">
      <div className="jp-serving-entity-card">
        <div className="jp-serving-card-label">Config version</div>
        <div className="jp-serving-card-value">{endpoint.config?.config_version ?? '–'}</div>
      </div>
      {entities.map(e => (
        <div key={e.name} className="jp-serving-entity-card" data-served={e.name}>
          <div className="jp-serving-card-label">
            {e.name} <BadgeView badge={entityBadge(e)} />
          </div>
          <div className="jp-serving-card-value-small">
            {e.entity_name ?? e.model_name} v{e.entity_version ?? e.model_version} ·{' '}
            {e.workload_type ?? 'CPU'} {e.workload_size ?? ''}
          </div>
          <div
            className="jp-serving-hint jp-serving-card-scale-to-zero"
            data-scale-to-zero={e.scale_to_zero_enabled ? 'on' : 'off'}
          >
            Scale to zero: {e.scale_to_zero_enabled ? 'on' : 'off'}
          </div>
          <div className="jp-serving-hint">{replicaText(e) ?? ''}</div>
        </div>
      ))}
    </div>
  );
}

// ---------------------------------------------------------------- events
function EventsView({ events }: { events: ServingEvent[] }): JSX.Element {
  if (events.length === 0) {
    return <div className="jp-serving-empty">No events yet.</div>;
  }
  return (
    <table className="jp-serving-grid jp-serving-events">
      <thead>
        <tr>
          <th>Time</th>
          <th>Event</th>
          <th>Served entity</th>
          <th>Message</th>
        </tr>
      </thead>
      <tbody>
        {[...events].reverse().map(e => (
          <tr
            key={`${e.timestamp_ms}-${e.type}-${e.served_entity ?? ''}-${e.message}`}
            data-event={e.type}
            className={`jp-serving-event-${e.severity.toLowerCase()}`}
          >
            <td className="jp-serving-nowrap">{formatClock(e.timestamp_ms)}</td>
            <td>
              <span
                className={`jp-serving-severity jp-serving-severity-${e.severity.toLowerCase()}`}
              >
                {e.type.replace(/_/g, ' ').toLowerCase()}
              </span>
            </td>
            <td>{e.served_entity ?? ''}</td>
            <td className="jp-serving-event-message">{e.message}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

// ---------------------------------------------------------------- logs
/** What the Logs tab opens on: a served entity's log filtered to one request's id. */
interface LogQuery {
  served: string;
  filter: string;
}

function LogsView(props: {
  client: ServingClient;
  endpoint: Endpoint | null;
  name: string;
  isVisible: () => boolean;
  initial?: LogQuery | null;
}): JSX.Element {
  const names = [
    ...new Set(
      [props.endpoint?.config, props.endpoint?.pending_config]
        .flatMap(c => c?.served_entities ?? c?.served_models ?? [])
        .map(e => e.name ?? e.entity_name)
    )
  ];
  const [served, setServed] = React.useState<string | null>(props.initial?.served ?? null);
  const [text, setText] = React.useState<string | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const current = served ?? names[0] ?? null;
  const load = async (): Promise<void> => {
    if (!current) {
      return;
    }
    try {
      setText(await props.client.logs(props.name, current));
      setError(null);
    } catch (err) {
      setError(errorMessage(err));
    }
  };
  const [follow, setFollow] = React.useState(true);
  const [filter, setFilter] = React.useState(props.initial?.filter ?? '');
  const pre = React.useRef<HTMLPreElement>(null);
  React.useEffect(() => void load(), [current]);
  // Follow: re-read the log while the tab is open, like `tail -f`.
  usePoll(async () => (follow ? load() : undefined), POLL_MS, props.isVisible, [current, follow]);
  React.useEffect(() => {
    if (follow && pre.current) {
      pre.current.scrollTop = pre.current.scrollHeight; // keep the newest line in view
    }
  }, [text, follow, filter]);
  const needle = filter.trim().toLowerCase();
  const shown = (text ?? '')
    .split('\n')
    .filter(line => !needle || line.toLowerCase().includes(needle))
    .join('\n');
  return (
    <div className="jp-serving-logs-view">
      <div className="jp-serving-page-toolbar">
        {names.map(n => (
          <button
            key={n}
            type="button"
            name={`logs-${n}`}
            className={`jp-serving-chip${n === current ? ' jp-mod-current' : ''}`}
            onClick={() => setServed(n)}
          >
            {n}
          </button>
        ))}
        <span className="jp-serving-toolbar-spacer" />
        <input
          className="jp-mod-styled jp-serving-logs-filter"
          name="logs-filter"
          type="search"
          placeholder="Filter lines (e.g. WARNING, a request id or a client_request_id)"
          value={filter}
          onChange={e => setFilter(e.target.value)}
        />
        <label className="jp-serving-checkbox">
          <input
            type="checkbox"
            name="logs-follow"
            checked={follow}
            onChange={e => setFollow(e.target.checked)}
          />
          Follow
        </label>
        <Button name="refresh-logs" onClick={() => void load()}>
          Refresh
        </Button>
      </div>
      <ErrorBanner message={error} />
      <pre ref={pre} className="jp-serving-logs jp-serving-logs-page" data-filter={needle}>
        {text ? shown || '(no line matches the filter)' : '(no output yet)'}
      </pre>
    </div>
  );
}

// ---------------------------------------------------------------- inference table
function TableView(props: {
  client: ServingClient;
  name: string;
  isVisible: () => boolean;
  onLogs: (query: LogQuery) => void;
}): JSX.Element {
  const [view, setView] = React.useState<InferenceTableView | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  // '' = the server's default: the entity with the most traffic.
  const [control, setControl] = React.useState('');
  usePoll(
    async () => {
      try {
        setView(await props.client.inferenceTable(props.name, 20, control || undefined));
        setError(null);
      } catch (err) {
        setError(errorMessage(err));
      }
    },
    TABLE_POLL_MS,
    props.isVisible,
    [props.name, control]
  );
  if (error) {
    return <ErrorBanner message={error} />;
  }
  if (!view) {
    return <div className="jp-serving-hint">Reading the inference table…</div>;
  }
  const comparison = view.comparison;
  return (
    <div className="jp-serving-table-view">
      <div className="jp-serving-hint">
        {view.path ? <code>{view.path}</code> : null} {view.requests} requests captured.{' '}
        {view.message ?? ''}
      </div>
      {comparison && (
        <>
          <div className="jp-serving-section-title jp-serving-comparison-title">
            A/B comparison against{' '}
            <select
              className="jp-mod-styled"
              name="control"
              aria-label="Control entity"
              style={{ width: 'auto', flex: '0 0 auto' }}
              value={control}
              onChange={e => setControl(e.target.value)}
            >
              <option value="">
                {control ? 'most traffic' : `most traffic (${comparison.control})`}
              </option>
              {comparison.entities.map(e => (
                <option key={String(e.served_entity_name)} value={String(e.served_entity_name)}>
                  {String(e.served_entity_name)}
                </option>
              ))}
            </select>
          </div>
          <div className="jp-serving-verdict" data-verdict>
            {comparison.verdict.split('\n').map(line => (
              <p key={line}>{line}</p>
            ))}
          </div>
          <table className="jp-serving-grid jp-serving-comparison">
            <thead>
              <tr>
                <th>Served entity</th>
                <th className="jp-serving-num">Requests</th>
                <th className="jp-serving-num">Error rate</th>
                <th className="jp-serving-num">p50</th>
                <th className="jp-serving-num">p95</th>
                <th className="jp-serving-num">p99</th>
              </tr>
            </thead>
            <tbody>
              {comparison.entities.map(e => (
                <tr
                  key={String(e.served_entity_name)}
                  data-entity={String(e.served_entity_name)}
                  data-control={e.served_entity_name === comparison.control ? '' : undefined}
                >
                  <td>
                    {String(e.served_entity_name)}
                    {e.served_entity_name === comparison.control ? ' (control)' : ''}
                  </td>
                  <td className="jp-serving-num">{e.requests}</td>
                  <td className="jp-serving-num">
                    {((Number(e.error_rate) || 0) * 100).toFixed(1)}%
                  </td>
                  <td className="jp-serving-num" data-latency="p50">
                    {formatTableMs(e.latency_p50_ms as number | null)}
                  </td>
                  <td className="jp-serving-num" data-latency="p95">
                    {formatTableMs(e.latency_p95_ms as number | null)}
                  </td>
                  <td className="jp-serving-num" data-latency="p99">
                    {formatTableMs(e.latency_p99_ms as number | null)}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
      {view.rows.length > 0 && (
        <>
          <div className="jp-serving-section-title">Latest requests</div>
          <table className="jp-serving-grid jp-serving-rows">
            <thead>
              <tr>
                <th>Time</th>
                <th>Served entity</th>
                <th className="jp-serving-num">Status</th>
                <th className="jp-serving-num">Latency</th>
                <th>Request</th>
                <th>Response</th>
                <th title="databricks_request_id; the replica's log lines for it start request_id=<id>">
                  Request ID
                </th>
              </tr>
            </thead>
            <tbody>
              {view.rows.map(r => (
                <tr key={String(r.databricks_request_id)} data-row>
                  <td className="jp-serving-nowrap">{formatClock(Number(r.timestamp_ms))}</td>
                  <td>{String(r.served_entity_name ?? '')}</td>
                  <td className="jp-serving-num">{String(r.status_code)}</td>
                  <td className="jp-serving-num">{formatTableMs(Number(r.execution_time_ms))}</td>
                  <td className="jp-serving-code-cell" title={String(r.request ?? '')}>
                    {String(r.request ?? '')}
                  </td>
                  <td className="jp-serving-code-cell" title={String(r.response ?? '')}>
                    {String(r.response ?? '')}
                  </td>
                  <td className="jp-serving-nowrap">
                    <button
                      className="jp-serving-link"
                      name="row-logs"
                      data-request-id={String(r.databricks_request_id)}
                      title={`${String(r.databricks_request_id)}: show its log lines`}
                      onClick={() =>
                        props.onLogs({
                          served: String(r.served_entity_name ?? ''),
                          filter: String(r.databricks_request_id)
                        })
                      }
                    >
                      <code>{String(r.databricks_request_id).slice(0, 8)}</code> logs
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
