/**
 * The create/edit form's model and its mapping to and from the REST bodies.
 *
 * The form mirrors the Serving UI steps (name, served entities with model/version, traffic, compute
 * type, scale-out size, scale to zero, environment variables, inference table). Keeping the mapping
 * here, free of React and JupyterLab, lets unit tests pin the exact request the panel sends.
 */

import { clampPercent, evenSplit, sum, TOTAL } from './traffic';
import type {
  AutoCaptureConfigInput,
  ConfigInput,
  CreateRequest,
  Endpoint,
  EndpointConfig,
  ServedEntity,
  ServedEntityInput
} from './types';

export const WORKLOAD_TYPES = [
  'CPU',
  'GPU_SMALL',
  'GPU_MEDIUM',
  'GPU_LARGE',
  'GPU_XLARGE',
  'GPU_XLARGE_8',
  'MULTIGPU_MEDIUM'
] as const;

/** Scale-out sizes with the concurrency each stands for, as the Serving UI labels them. */
export const WORKLOAD_SIZES: ReadonlyArray<{ value: string; label: string }> = [
  // Short enough for the sidebar's narrow select; the field's title says what the numbers count.
  { value: 'Small', label: 'Small (0-4 concurrent)' },
  { value: 'Medium', label: 'Medium (8-16 concurrent)' },
  { value: 'Large', label: 'Large (16-64 concurrent)' }
];

export interface EnvVarRow {
  key: string;
  value: string;
}

export interface EntityForm {
  model: string;
  version: string;
  /** Custom served-entity name; empty means the server's default `<model>-<version>`. */
  name: string;
  traffic: number;
  workloadType: string;
  workloadSize: string;
  scaleToZero: boolean;
  envVars: EnvVarRow[];
  /** Fields the server sent that the form does not edit, echoed back unchanged on update. */
  extra: Record<string, unknown>;
}

export interface InferenceTableForm {
  enabled: boolean;
  catalog: string;
  schema: string;
  prefix: string;
  /** The endpoint already had a capture config, so unticking must send `enabled: false`. */
  configured: boolean;
}

export interface EndpointForm {
  name: string;
  entities: EntityForm[];
  inferenceTable: InferenceTableForm;
}

/** Field key → message; keys are `name`, `traffic`, `inferenceTable`, `form`, `entities.<i>.<field>`. */
export type FieldErrors = Record<string, string>;

export function emptyEntity(traffic = TOTAL): EntityForm {
  return {
    model: '',
    version: '',
    name: '',
    traffic,
    workloadType: 'CPU',
    workloadSize: 'Small',
    scaleToZero: false,
    envVars: [],
    extra: {}
  };
}

export function emptyForm(): EndpointForm {
  return {
    name: '',
    entities: [emptyEntity()],
    inferenceTable: {
      enabled: false,
      catalog: 'main',
      schema: 'default',
      prefix: '',
      configured: false
    }
  };
}

/** Add a served entity and re-split traffic evenly, as adding a model in the Serving UI does. */
export function addEntity(form: EndpointForm): EndpointForm {
  const shares = evenSplit(form.entities.length + 1);
  const entities = [...form.entities, emptyEntity()].map((e, i) => ({ ...e, traffic: shares[i] }));
  return { ...form, entities };
}

export function removeEntity(form: EndpointForm, index: number): EndpointForm {
  const kept = form.entities.filter((_, i) => i !== index);
  const shares = evenSplit(kept.length);
  return { ...form, entities: kept.map((e, i) => ({ ...e, traffic: shares[i] })) };
}

/** Model versions newest first, numerically ("10" before "9"). */
export function sortVersions(versions: string[]): string[] {
  return [...versions].sort((a, b) => Number(b) - Number(a) || b.localeCompare(a));
}

/** The server's default served-entity name (`jupyter_serving/model/config.py: default_served_name`). */
export function defaultServedName(model: string, version: string): string {
  const base = model.split('.').pop() ?? model;
  const name = version ? `${base}-${version}` : base;
  return name.replace(/[^A-Za-z0-9_-]/g, '-');
}

export function servedName(entity: EntityForm): string {
  return entity.name.trim() || defaultServedName(entity.model.trim(), entity.version.trim());
}

export function toServedEntity(entity: EntityForm): ServedEntityInput {
  const out: ServedEntityInput = {
    ...entity.extra,
    // Always named explicitly: traffic routes refer to served entities by name.
    name: servedName(entity),
    entity_name: entity.model.trim()
  };
  // A `models:/...` URI carries its own version, and a custom concurrency range has no size.
  if (entity.version.trim()) {
    out.entity_version = entity.version.trim();
  }
  if (entity.workloadSize) {
    out.workload_size = entity.workloadSize;
  }
  out.workload_type = entity.workloadType;
  out.scale_to_zero_enabled = entity.scaleToZero;
  const env = envVarsToObject(entity.envVars);
  if (Object.keys(env).length) {
    out.environment_vars = env;
  }
  return out;
}

export function toAutoCapture(table: InferenceTableForm): AutoCaptureConfigInput | undefined {
  if (!table.enabled && !table.configured) {
    return undefined;
  }
  const out: AutoCaptureConfigInput = { enabled: table.enabled };
  if (table.catalog.trim()) {
    out.catalog_name = table.catalog.trim();
  }
  if (table.schema.trim()) {
    out.schema_name = table.schema.trim();
  }
  if (table.prefix.trim()) {
    out.table_name_prefix = table.prefix.trim();
  }
  return out;
}

/** The body of `PUT .../config` and the `config` of a create request. */
export function toConfig(form: EndpointForm): ConfigInput {
  const config: ConfigInput = {
    served_entities: form.entities.map(toServedEntity),
    traffic_config: {
      routes: form.entities.map(e => ({
        served_model_name: servedName(e),
        traffic_percentage: clampPercent(e.traffic)
      }))
    }
  };
  const capture = toAutoCapture(form.inferenceTable);
  if (capture) {
    config.auto_capture_config = capture;
  }
  return config;
}

export function toCreateRequest(form: EndpointForm): CreateRequest {
  return { name: form.name.trim(), config: toConfig(form) };
}

/** Output-only fields of a served entity: never echoed back in an update. */
const OUTPUT_FIELDS = new Set(['state', 'creator', 'creation_timestamp', 'local']);
/** Fields the form edits itself. */
const FORM_FIELDS = new Set([
  'name',
  'entity_name',
  'entity_version',
  'model_name',
  'model_version',
  'workload_type',
  'workload_size',
  'scale_to_zero_enabled',
  'environment_vars'
]);

export function entityFromServer(entity: ServedEntity, traffic: number): EntityForm {
  const extra: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(entity)) {
    if (!OUTPUT_FIELDS.has(k) && !FORM_FIELDS.has(k)) {
      extra[k] = v;
    }
  }
  const hasSize = entity.workload_size !== undefined || !('min_provisioned_concurrency' in extra);
  return {
    model: entity.entity_name || entity.model_name || '',
    version: String(entity.entity_version || entity.model_version || ''),
    name: entity.name ?? '',
    traffic,
    workloadType: entity.workload_type ?? 'CPU',
    // A custom concurrency range has no size; keep it in `extra` and send no size.
    workloadSize: hasSize ? (entity.workload_size ?? 'Small') : '',
    scaleToZero: !!entity.scale_to_zero_enabled,
    envVars: Object.entries(entity.environment_vars ?? {}).map(([key, value]) => ({ key, value })),
    extra
  };
}

/** The form pre-filled from an endpoint, for "Edit": the pending config wins, as it is the newest. */
export function fromEndpoint(endpoint: Endpoint): EndpointForm {
  const config: EndpointConfig = endpoint.pending_config ?? endpoint.config ?? {};
  const entities = config.served_entities ?? config.served_models ?? [];
  const routes = config.traffic_config?.routes ?? [];
  const fallback = evenSplit(entities.length);
  const capture = config.auto_capture_config;
  return {
    name: endpoint.name,
    entities: entities.map((e, i) => {
      const route = routes.find(r => r.served_model_name === e.name);
      return entityFromServer(
        e,
        route ? route.traffic_percentage : routes.length ? 0 : fallback[i]
      );
    }),
    inferenceTable: {
      enabled: !!capture && capture.enabled !== false,
      catalog: capture?.catalog_name ?? 'main',
      schema: capture?.schema_name ?? 'default',
      prefix: capture?.table_name_prefix ?? '',
      configured: !!capture
    }
  };
}

export function envVarsToObject(rows: EnvVarRow[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const row of rows) {
    if (row.key.trim()) {
      out[row.key.trim()] = row.value;
    }
  }
  return out;
}

/**
 * Checks that can be made before any request; everything else (reserved names, unknown models,
 * version formats) is left to the server, whose messages are shown at the same places.
 */
export function validate(form: EndpointForm): FieldErrors {
  const errors: FieldErrors = {};
  if (!form.name.trim()) {
    errors.name = 'Enter a name for the endpoint.';
  }
  if (!form.entities.length) {
    errors.form = 'Add at least one served entity.';
  }
  const seen = new Map<string, number>();
  form.entities.forEach((e, i) => {
    if (!e.model.trim()) {
      errors[`entities.${i}.model`] = 'Select a model.';
    } else if (!e.version.trim() && !e.model.trim().startsWith('models:/')) {
      errors[`entities.${i}.version`] = 'Select a model version.';
    }
    const name = servedName(e);
    if (e.model.trim() && seen.has(name)) {
      errors[`entities.${i}.name`] =
        `Served entity name '${name}' is already used; rename one of them.`;
    }
    seen.set(name, i);
    if (e.envVars.some(r => !r.key.trim() && r.value)) {
      errors[`entities.${i}.envVars`] = 'Every environment variable needs a name.';
    }
  });
  const total = sum(form.entities.map(e => clampPercent(e.traffic)));
  if (form.entities.length && total !== TOTAL) {
    errors.traffic = `Traffic percentages must sum to 100; they sum to ${total}.`;
  }
  return errors;
}

const ENTITY_FIELD: Record<string, keyof EntityForm> = {
  entity_name: 'model',
  model_name: 'model',
  entity_version: 'version',
  model_version: 'version',
  name: 'name',
  workload_type: 'workloadType',
  workload_size: 'workloadSize',
  min_provisioned_concurrency: 'workloadSize',
  max_provisioned_concurrency: 'workloadSize',
  scale_to_zero_enabled: 'scaleToZero',
  environment_vars: 'envVars'
};

/**
 * Where to show a server validation message. The server names the offending field in its messages
 * (`served_entities[1].entity_version ...`, `traffic_config.routes ...`, `Endpoint name ...`), so
 * the message can sit next to the input that caused it.
 */
export function fieldOfServerError(errorCode: string, message: string, form: EndpointForm): string {
  if (errorCode === 'RESOURCE_ALREADY_EXISTS' || /^Endpoint name\b/.test(message)) {
    return 'name';
  }
  const entity = /served_(?:entities|models)\[(\d+)\](?:\.(\w+))?/.exec(message);
  if (entity) {
    const field = (entity[2] && ENTITY_FIELD[entity[2]]) || 'model';
    return `entities.${entity[1]}.${field}`;
  }
  const duplicate = /Served entity name '([^']+)'/.exec(message);
  if (duplicate) {
    const i = form.entities.findIndex(e => servedName(e) === duplicate[1]);
    return i === -1 ? 'form' : `entities.${i}.name`;
  }
  if (/traffic/i.test(message)) {
    return 'traffic';
  }
  if (/auto_capture_config|inference table/i.test(message)) {
    return 'inferenceTable';
  }
  return 'form';
}
