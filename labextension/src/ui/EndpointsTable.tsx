/**
 * The Model Serving page's first view: every endpoint in one table with its live numbers.
 */

import * as React from 'react';

import { endpointBadges } from '../badge';
import { formatAgo, formatMs, formatRate, Latest } from '../history';
import type { Endpoint } from '../types';
import { BadgeView, Button } from './common';
import { TrafficBar } from './TrafficBar';

export interface EndpointsTableProps {
  endpoints: Endpoint[];
  latest: Map<string, Latest>;
  nowMs: number;
  onOpen: (name: string) => void;
  onCreate: () => void;
}

function entityNames(endpoint: Endpoint): string[] {
  const config = endpoint.config ?? endpoint.pending_config;
  return (config?.served_entities ?? config?.served_models ?? []).map(e => e.name ?? e.entity_name);
}

function replicas(endpoint: Endpoint): string {
  const entities = endpoint.config?.served_entities ?? [];
  if (entities.length === 0) {
    return '–';
  }
  const ready = entities.reduce((n, e) => n + (e.local?.ready_replicas ?? 0), 0);
  const all = entities.reduce((n, e) => n + (e.local?.replicas ?? 0), 0);
  return ready === all ? `${ready}` : `${ready} / ${all}`;
}

export function EndpointsTable(props: EndpointsTableProps): JSX.Element {
  return (
    <div className="jp-serving-page-section">
      <div className="jp-serving-page-toolbar">
        <h1 className="jp-serving-page-title">Serving endpoints</h1>
        <Button accent="primary" name="create" onClick={props.onCreate}>
          Create serving endpoint
        </Button>
      </div>
      {props.endpoints.length === 0 ? (
        <div className="jp-serving-empty">
          No serving endpoints yet. Create one to serve a registered MLflow model.
        </div>
      ) : (
        <table className="jp-serving-grid jp-serving-endpoints-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Served entities</th>
              <th className="jp-serving-col-traffic">Traffic</th>
              <th className="jp-serving-num">Replicas</th>
              <th className="jp-serving-num">Requests/s</th>
              <th className="jp-serving-num">p99</th>
              <th className="jp-serving-num">Errors/s</th>
              <th>Last update</th>
            </tr>
          </thead>
          <tbody>
            {props.endpoints.map(e => {
              const names = entityNames(e);
              const live = props.latest.get(e.name);
              return (
                <tr key={e.name} data-endpoint={e.name}>
                  <td>
                    <a
                      href="#"
                      className="jp-serving-link"
                      onClick={ev => {
                        ev.preventDefault();
                        props.onOpen(e.name);
                      }}
                    >
                      {e.name}
                    </a>
                  </td>
                  <td>
                    <span className="jp-serving-badges">
                      {endpointBadges(e).map(b => (
                        <BadgeView key={b.kind} badge={b} />
                      ))}
                    </span>
                  </td>
                  <td className="jp-serving-entities-cell">{names.join(', ') || '–'}</td>
                  <td className="jp-serving-col-traffic">
                    {e.config?.traffic_config ? (
                      <TrafficBar routes={e.config.traffic_config.routes} entityNames={names} />
                    ) : (
                      '–'
                    )}
                  </td>
                  <td className="jp-serving-num">{replicas(e)}</td>
                  <td className="jp-serving-num" data-metric="requests">
                    {formatRate(live?.requestsPerS ?? null)}
                  </td>
                  <td className="jp-serving-num">{formatMs(live?.p99Ms ?? null)}</td>
                  <td className="jp-serving-num">{formatRate(live?.errorsPerS ?? null)}</td>
                  <td>{formatAgo(e.last_updated_timestamp, props.nowMs)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </div>
  );
}
