/**
 * One endpoint in the list: state badges, served entities with versions and replicas, the traffic
 * bar, the inference table, and the actions (edit, query, logs, cancel update, notebook, delete).
 */

import * as React from 'react';

import { endpointBadges, entityBadge, isUpdating, principalText, replicaText } from '../badge';
import type { ServingClient } from '../client';
import { queryTargets } from '../playground';
import type { Endpoint, EndpointConfig, ServedEntity } from '../types';
import { BadgeView, Button } from './common';
import { Playground } from './Playground';
import { TrafficBar } from './TrafficBar';

export interface EndpointActions {
  edit: (endpoint: Endpoint) => void;
  cancelUpdate: (endpoint: Endpoint) => Promise<void>;
  remove: (endpoint: Endpoint) => Promise<void>;
  showLogs: (endpoint: Endpoint, served: string) => Promise<void>;
  openInNotebook: (endpoint: Endpoint) => void;
  /** Open the endpoint's page in the main area (absent: the name is plain text). */
  open?: (endpoint: Endpoint) => void;
}

export interface EndpointCardProps {
  endpoint: Endpoint;
  client: ServingClient;
  actions: EndpointActions;
}

export function EndpointCard({ endpoint, client, actions }: EndpointCardProps): JSX.Element {
  const [playground, setPlayground] = React.useState(false);
  const updating = isUpdating(endpoint);
  const config = endpoint.config;
  const principals = principalText(endpoint);
  return (
    <li className="jp-serving-endpoint" data-endpoint={endpoint.name}>
      <div className="jp-serving-endpoint-header">
        {actions.open ? (
          <button
            type="button"
            name="open-endpoint"
            className="jp-serving-endpoint-name jp-serving-link"
            title="Open this endpoint's page: charts, events, logs, inference table"
            onClick={() => actions.open?.(endpoint)}
          >
            {endpoint.name}
          </button>
        ) : (
          <span className="jp-serving-endpoint-name">{endpoint.name}</span>
        )}
        <span className="jp-serving-badges">
          {endpointBadges(endpoint).map(b => (
            <BadgeView key={b.kind} badge={b} />
          ))}
        </span>
      </div>
      {principals && <div className="jp-serving-principals">{principals}</div>}
      {endpoint.tags?.length ? (
        <div className="jp-serving-tags">
          Tags:{' '}
          {endpoint.tags
            .map(t => (t.value !== undefined ? `${t.key}=${t.value}` : t.key))
            .join(', ')}
        </div>
      ) : null}
      {config ? (
        <ConfigView
          endpoint={endpoint}
          config={config}
          onLogs={served => actions.showLogs(endpoint, served)}
        />
      ) : (
        <div className="jp-serving-hint">No configuration deployed yet.</div>
      )}
      {endpoint.pending_config && (
        <div className="jp-serving-pending">
          <div className="jp-serving-section-title">
            {updating ? 'Updating to' : 'Last update'} (config version{' '}
            {endpoint.pending_config.config_version ?? '?'})
          </div>
          <EntityList
            entities={endpoint.pending_config.served_entities ?? []}
            onLogs={served => actions.showLogs(endpoint, served)}
          />
        </div>
      )}
      <div className="jp-serving-actions">
        <Button
          name="edit"
          disabled={updating}
          title={updating ? 'Wait for the update or cancel it' : ''}
          onClick={() => actions.edit(endpoint)}
        >
          Edit
        </Button>
        <Button name="query" onClick={() => setPlayground(!playground)} aria-expanded={playground}>
          Query
        </Button>
        {updating && (
          <Button name="cancel-update" onClick={() => void actions.cancelUpdate(endpoint)}>
            Cancel update
          </Button>
        )}
        <Button name="open-in-notebook" onClick={() => actions.openInNotebook(endpoint)}>
          Notebook
        </Button>
        <Button name="delete" accent="warn" onClick={() => void actions.remove(endpoint)}>
          Delete
        </Button>
      </div>
      {playground && (
        <Playground client={client} endpoint={endpoint.name} targets={queryTargets(endpoint)} />
      )}
    </li>
  );
}

function ConfigView(props: {
  endpoint: Endpoint;
  config: EndpointConfig;
  onLogs: (served: string) => void;
}): JSX.Element {
  const entities = props.config.served_entities ?? props.config.served_models ?? [];
  const table = props.config.auto_capture_config;
  const tablePath = table?.state?.payload_table?.path;
  return (
    <>
      <EntityList entities={entities} onLogs={props.onLogs} />
      {props.config.traffic_config && (
        <TrafficBar
          routes={props.config.traffic_config.routes}
          entityNames={entities.map(e => e.name ?? '')}
        />
      )}
      {table && table.enabled !== false && (
        <div className="jp-serving-table" title={tablePath ?? ''}>
          Inference table:{' '}
          <code className="jp-serving-table-path">
            {tablePath ??
              table.state?.payload_table?.name ??
              `${table.catalog_name}.${table.schema_name}.${table.table_name_prefix ?? props.endpoint.name}_payload`}
          </code>
          {table.state?.payload_table?.status && (
            <span className="jp-serving-hint"> ({table.state.payload_table.status})</span>
          )}
        </div>
      )}
    </>
  );
}

function EntityList(props: {
  entities: ServedEntity[];
  onLogs: (served: string) => void;
}): JSX.Element {
  return (
    <ul className="jp-serving-entities">
      {props.entities.map(e => {
        const replicas = replicaText(e);
        const version = e.entity_version ?? e.model_version;
        return (
          <li key={e.name} className="jp-serving-entity" data-served={e.name}>
            <div className="jp-serving-entity-line">
              <span
                className="jp-serving-entity-name"
                title={e.state?.deployment_state_message ?? ''}
              >
                {e.name}
              </span>
              <BadgeView badge={entityBadge(e)} />
            </div>
            <div className="jp-serving-entity-detail">
              {e.entity_name ?? e.model_name}
              {version ? ` v${version}` : ''} · {e.workload_type ?? 'CPU'} {e.workload_size ?? ''}
              {e.scale_to_zero_enabled ? ' · scale to zero' : ''}
              {replicas ? ` · ${replicas}` : ''}
              {e.local?.gpus?.length ? ` · GPU ${e.local.gpus.join(',')}` : ''}
            </div>
            {entityBadge(e).kind === 'failed' && e.state?.deployment_state_message && (
              <div className="jp-serving-entity-message">{e.state.deployment_state_message}</div>
            )}
            {e.name && (
              <button
                type="button"
                className="jp-serving-link"
                name="logs"
                onClick={() => props.onLogs(e.name!)}
              >
                logs
              </button>
            )}
          </li>
        );
      })}
    </ul>
  );
}
