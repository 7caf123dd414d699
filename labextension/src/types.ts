/**
 * Wire types of the serving REST API (docs/CONTRACT.md, Databricks serving-endpoints format).
 *
 * Only the fields the panel reads or writes are typed; the server may send more, and the panel
 * never drops what it does not understand when it echoes a config back.
 */

export type ReadyState = 'READY' | 'NOT_READY';
export type ConfigUpdateState =
  'NOT_UPDATING' | 'IN_PROGRESS' | 'UPDATE_FAILED' | 'UPDATE_CANCELED';

export interface EndpointState {
  ready: ReadyState | string;
  config_update?: ConfigUpdateState | string;
}

export interface EntityDeploymentState {
  deployment?: string;
  deployment_state_message?: string;
}

/** Our extension of a served entity: what is running locally. */
export interface LocalRuntime {
  replicas?: number;
  ready_replicas?: number;
  gpus?: number[];
  /** Feature tables the replicas look features up from, with the Delta version each serves. */
  feature_tables?: { name: string; version: number; rows?: number }[];
}

export interface ServedEntityInput {
  name?: string;
  entity_name: string;
  entity_version?: string;
  workload_size?: string;
  workload_type?: string;
  scale_to_zero_enabled?: boolean;
  environment_vars?: Record<string, string>;
  [extra: string]: unknown;
}

export interface ServedEntity extends ServedEntityInput {
  state?: EntityDeploymentState;
  creator?: string;
  creation_timestamp?: number;
  local?: LocalRuntime;
  /** Legacy `served_models` spelling, still accepted by the server. */
  model_name?: string;
  model_version?: string;
}

export interface Route {
  served_model_name: string;
  traffic_percentage: number;
}

export interface TrafficConfig {
  routes: Route[];
}

export interface AutoCaptureConfigInput {
  catalog_name?: string;
  schema_name?: string;
  table_name_prefix?: string;
  enabled?: boolean;
}

export interface AutoCaptureConfig extends AutoCaptureConfigInput {
  state?: {
    payload_table?: { name?: string; status?: string; path?: string };
  };
}

export interface EndpointConfig {
  config_version?: number;
  served_entities?: ServedEntity[];
  served_models?: ServedEntity[];
  traffic_config?: TrafficConfig;
  auto_capture_config?: AutoCaptureConfig;
  start_time?: number;
}

export interface Endpoint {
  name: string;
  id?: string;
  creator?: string;
  creation_timestamp?: number;
  last_updated_timestamp?: number;
  /** The caller's own level on this endpoint: CAN_VIEW, CAN_QUERY or CAN_MANAGE. */
  permission_level?: string;
  state: EndpointState;
  config?: EndpointConfig;
  pending_config?: EndpointConfig;
  tags?: { key: string; value?: string }[];
}

/** Body of `PUT .../config`, and the `config` of a create request. */
export interface ConfigInput {
  served_entities: ServedEntityInput[];
  traffic_config?: TrafficConfig;
  auto_capture_config?: AutoCaptureConfigInput;
}

export interface CreateRequest {
  name: string;
  config: ConfigInput;
}

export interface ModelVersion {
  version: string;
  status?: string;
  creation_timestamp?: number;
  run_id?: string;
}

export interface RegisteredModel {
  name: string;
  versions: ModelVersion[];
}

/** The answer of an invocation, as the playground shows it. */
export interface QueryResult {
  status: number;
  ok: boolean;
  body: string;
  servedModelName: string | null;
  requestId: string | null;
  elapsedMs: number;
}
