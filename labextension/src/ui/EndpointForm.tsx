/**
 * Create / edit form, following the Serving UI steps: name, served entities (model, version,
 * traffic, compute type, scale-out, scale to zero, advanced: rename and environment variables),
 * inference table. The form state lives here; its meaning lives in ../form.ts.
 */

import * as React from 'react';

import { errorMessage, ServingApiError } from '../errors';
import {
  addEntity,
  defaultServedName,
  EndpointForm as FormState,
  EntityForm,
  FieldErrors,
  fieldOfServerError,
  removeEntity,
  sortVersions,
  validate,
  WORKLOAD_SIZES,
  WORKLOAD_TYPES
} from '../form';
import { setShare, sum } from '../traffic';
import type { RegisteredModel } from '../types';
import { Button, FieldError } from './common';

export interface EndpointFormProps {
  mode: 'create' | 'edit';
  initial: FormState;
  /** null while the registry is loading. */
  models: RegisteredModel[] | null;
  modelsError: string | null;
  onSubmit: (form: FormState) => Promise<void>;
  onCancel: () => void;
  onOpenInNotebook: (form: FormState) => void;
}

export function EndpointFormView(props: EndpointFormProps): JSX.Element {
  const [form, setForm] = React.useState<FormState>(props.initial);
  const [errors, setErrors] = React.useState<FieldErrors>({});
  const [busy, setBusy] = React.useState(false);
  const formRef = React.useRef<HTMLFormElement>(null);

  // The submit button is at the bottom of a long form; bring the first message into view.
  React.useEffect(() => {
    formRef.current?.querySelector('.jp-serving-field-error')?.scrollIntoView({ block: 'center' });
  }, [errors]);

  const updateEntity = (i: number, patch: Partial<EntityForm>): void =>
    setForm(f => ({
      ...f,
      entities: f.entities.map((e, k) => (k === i ? { ...e, ...patch } : e))
    }));

  const setTraffic = (i: number, value: number): void =>
    setForm(f => {
      const shares = setShare(
        f.entities.map(e => e.traffic),
        i,
        value
      );
      return { ...f, entities: f.entities.map((e, k) => ({ ...e, traffic: shares[k] })) };
    });

  const submit = async (event: React.FormEvent): Promise<void> => {
    event.preventDefault();
    const local = validate(form);
    setErrors(local);
    if (Object.keys(local).length) {
      return;
    }
    setBusy(true);
    try {
      await props.onSubmit(form);
    } catch (err) {
      // The server's validation message goes next to the field it names.
      const field =
        err instanceof ServingApiError
          ? fieldOfServerError(err.errorCode, err.message, form)
          : 'form';
      setErrors({ [field]: errorMessage(err) });
    } finally {
      setBusy(false);
    }
  };

  const total = sum(form.entities.map(e => e.traffic));
  return (
    <form className="jp-serving-form" ref={formRef} onSubmit={submit} noValidate>
      <h3 className="jp-serving-form-title">
        {props.mode === 'create' ? 'Create serving endpoint' : `Edit ${form.name}`}
      </h3>
      <label className="jp-serving-label">
        Name
        <input
          className="jp-mod-styled jp-serving-input"
          name="name"
          value={form.name}
          disabled={props.mode === 'edit'}
          placeholder="my-endpoint"
          onChange={e => setForm({ ...form, name: e.target.value })}
        />
        <FieldError errors={errors} field="name" />
      </label>

      <fieldset className="jp-serving-fieldset">
        <legend>Served entities</legend>
        {props.modelsError && (
          <div className="jp-serving-hint">Model registry: {props.modelsError}</div>
        )}
        {form.entities.map((entity, i) => (
          <EntityFields
            key={i}
            index={i}
            entity={entity}
            models={props.models}
            errors={errors}
            removable={form.entities.length > 1}
            onChange={patch => updateEntity(i, patch)}
            onTraffic={value => setTraffic(i, value)}
            onRemove={() => setForm(removeEntity(form, i))}
          />
        ))}
        <div className={`jp-serving-traffic-total${total === 100 ? '' : ' jp-mod-invalid'}`}>
          Traffic total: {total}%
        </div>
        <FieldError errors={errors} field="traffic" />
        <Button name="add-entity" onClick={() => setForm(addEntity(form))}>
          Add served entity
        </Button>
      </fieldset>

      <InferenceTableFields form={form} errors={errors} onChange={setForm} />

      <FieldError errors={errors} field="form" />
      <div className="jp-serving-form-actions">
        <Button type="submit" accent="primary" name="submit" disabled={busy}>
          {busy ? 'Saving…' : props.mode === 'create' ? 'Create' : 'Update'}
        </Button>
        <Button name="cancel" onClick={props.onCancel} disabled={busy}>
          Cancel
        </Button>
        <Button name="open-in-notebook" onClick={() => props.onOpenInNotebook(form)}>
          Open in notebook
        </Button>
      </div>
    </form>
  );
}

interface EntityFieldsProps {
  index: number;
  entity: EntityForm;
  models: RegisteredModel[] | null;
  errors: FieldErrors;
  removable: boolean;
  onChange: (patch: Partial<EntityForm>) => void;
  onTraffic: (value: number) => void;
  onRemove: () => void;
}

function EntityFields(props: EntityFieldsProps): JSX.Element {
  const { entity, index, errors } = props;
  const f = (field: string): string => `entities.${index}.${field}`;
  return (
    <div className="jp-serving-entity-form" data-entity-index={index}>
      <div className="jp-serving-entity-form-header">
        <span>Entity {index + 1}</span>
        {props.removable && (
          <Button name="remove-entity" title="Remove this served entity" onClick={props.onRemove}>
            Remove
          </Button>
        )}
      </div>
      <ModelPicker {...props} />
      <label className="jp-serving-label">
        Served entity name
        <input
          className="jp-mod-styled jp-serving-input"
          name={f('name')}
          value={entity.name}
          placeholder={defaultServedName(entity.model, entity.version) || 'model-version'}
          title="Routes and the inference table name the entity by this; empty: <model>-<version>"
          onChange={e => props.onChange({ name: e.target.value })}
        />
        <FieldError errors={errors} field={f('name')} />
      </label>
      <label className="jp-serving-label">
        Traffic (%)
        <input
          className="jp-mod-styled jp-serving-input"
          type="number"
          min={0}
          max={100}
          name={f('traffic')}
          value={entity.traffic}
          onChange={e => props.onTraffic(e.target.valueAsNumber)}
        />
      </label>
      <label className="jp-serving-label">
        Compute type
        <select
          className="jp-mod-styled jp-serving-input"
          name={f('workloadType')}
          value={entity.workloadType}
          onChange={e => props.onChange({ workloadType: e.target.value })}
        >
          {withCurrent(WORKLOAD_TYPES, entity.workloadType).map(t => (
            <option key={t} value={t}>
              {t}
            </option>
          ))}
        </select>
        <FieldError errors={errors} field={f('workloadType')} />
      </label>
      <label className="jp-serving-label">
        Compute scale-out
        <select
          className="jp-mod-styled jp-serving-input"
          name={f('workloadSize')}
          value={entity.workloadSize}
          onChange={e => props.onChange({ workloadSize: e.target.value })}
        >
          {entity.workloadSize === '' && <option value="">Custom concurrency</option>}
          {WORKLOAD_SIZES.map(s => (
            <option key={s.value} value={s.value}>
              {s.label}
            </option>
          ))}
        </select>
        <FieldError errors={errors} field={f('workloadSize')} />
      </label>
      <label className="jp-serving-checkbox">
        <input
          type="checkbox"
          name={f('scaleToZero')}
          checked={entity.scaleToZero}
          onChange={e => props.onChange({ scaleToZero: e.target.checked })}
        />
        Scale to zero when idle
        <FieldError errors={errors} field={f('scaleToZero')} />
      </label>
      <AdvancedFields {...props} />
    </div>
  );
}

/** Model and version pickers fed by the registry; a free-text field when the registry is unavailable. */
function ModelPicker(props: EntityFieldsProps): JSX.Element {
  const { entity, index, errors, models } = props;
  const f = (field: string): string => `entities.${index}.${field}`;
  const model = models?.find(m => m.name === entity.model);
  const versions = model ? sortVersions(model.versions.map(v => v.version)) : [];
  React.useEffect(() => {
    // A model set before the registry answered (or kept from an edit) gets its newest version.
    if (entity.model && !entity.version && versions.length) {
      props.onChange({ version: versions[0] });
    }
  }, [entity.model, entity.version, versions.join(',')]);
  const pickModel = (name: string): void => {
    const chosen = models?.find(m => m.name === name);
    // Default to the newest version, as picking a model in the Serving UI does.
    const latest = chosen ? (sortVersions(chosen.versions.map(v => v.version))[0] ?? '') : '';
    props.onChange({ model: name, version: latest });
  };
  return (
    <>
      <label className="jp-serving-label">
        Model
        {models && models.length ? (
          <select
            className="jp-mod-styled jp-serving-input"
            name={f('model')}
            value={entity.model}
            onChange={e => pickModel(e.target.value)}
          >
            <option value="">Select a registered model…</option>
            {withCurrent(
              models.map(m => m.name),
              entity.model
            ).map(n => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        ) : (
          <input
            className="jp-mod-styled jp-serving-input"
            name={f('model')}
            value={entity.model}
            placeholder={models === null ? 'Loading models…' : 'registered model name'}
            onChange={e => props.onChange({ model: e.target.value })}
          />
        )}
        <FieldError errors={errors} field={f('model')} />
      </label>
      <label className="jp-serving-label">
        Version
        {versions.length ? (
          <select
            className="jp-mod-styled jp-serving-input"
            name={f('version')}
            value={entity.version}
            onChange={e => props.onChange({ version: e.target.value })}
          >
            <option value="">Select a version…</option>
            {withCurrent(versions, entity.version).map(v => (
              <option key={v} value={v}>
                {v}
              </option>
            ))}
          </select>
        ) : (
          <input
            className="jp-mod-styled jp-serving-input"
            name={f('version')}
            value={entity.version}
            placeholder="1"
            onChange={e => props.onChange({ version: e.target.value })}
          />
        )}
        <FieldError errors={errors} field={f('version')} />
      </label>
    </>
  );
}

/** "Advanced configuration" of the Serving UI: environment variables. */
function AdvancedFields(props: EntityFieldsProps): JSX.Element {
  const { entity, index, errors } = props;
  const f = (field: string): string => `entities.${index}.${field}`;
  const rows = entity.envVars;
  const setRow = (k: number, patch: Partial<{ key: string; value: string }>): void =>
    props.onChange({ envVars: rows.map((r, j) => (j === k ? { ...r, ...patch } : r)) });
  const hasErrors = !!errors[f('envVars')];
  return (
    <details className="jp-serving-advanced" open={hasErrors || undefined}>
      <summary>Advanced configuration</summary>
      <div className="jp-serving-label">Environment variables</div>
      {rows.map((row, k) => (
        <div className="jp-serving-env-row" key={k}>
          <input
            className="jp-mod-styled jp-serving-input"
            aria-label="variable name"
            placeholder="NAME"
            value={row.key}
            onChange={e => setRow(k, { key: e.target.value })}
          />
          <input
            className="jp-mod-styled jp-serving-input"
            aria-label="variable value"
            placeholder="value or {{secrets/scope/key}}"
            value={row.value}
            onChange={e => setRow(k, { value: e.target.value })}
          />
          <Button
            title="Remove variable"
            onClick={() => props.onChange({ envVars: rows.filter((_, j) => j !== k) })}
          >
            ×
          </Button>
        </div>
      ))}
      <FieldError errors={errors} field={f('envVars')} />
      <Button
        name={f('addEnvVar')}
        onClick={() => props.onChange({ envVars: [...rows, { key: '', value: '' }] })}
      >
        Add variable
      </Button>
    </details>
  );
}

function InferenceTableFields(props: {
  form: FormState;
  errors: FieldErrors;
  onChange: (form: FormState) => void;
}): JSX.Element {
  const { form } = props;
  const table = form.inferenceTable;
  const set = (patch: Partial<FormState['inferenceTable']>): void =>
    props.onChange({ ...form, inferenceTable: { ...table, ...patch } });
  return (
    <fieldset className="jp-serving-fieldset">
      <legend>Inference table</legend>
      <label className="jp-serving-checkbox">
        <input
          type="checkbox"
          name="inferenceTable.enabled"
          checked={table.enabled}
          onChange={e => set({ enabled: e.target.checked })}
        />
        Log requests and responses to a Delta table
      </label>
      {table.enabled && (
        <div className="jp-serving-table-fields">
          <label className="jp-serving-label">
            Catalog
            <input
              className="jp-mod-styled jp-serving-input"
              name="inferenceTable.catalog"
              value={table.catalog}
              onChange={e => set({ catalog: e.target.value })}
            />
          </label>
          <label className="jp-serving-label">
            Schema
            <input
              className="jp-mod-styled jp-serving-input"
              name="inferenceTable.schema"
              value={table.schema}
              onChange={e => set({ schema: e.target.value })}
            />
          </label>
          <label className="jp-serving-label">
            Table name prefix
            <input
              className="jp-mod-styled jp-serving-input"
              name="inferenceTable.prefix"
              value={table.prefix}
              placeholder={form.name || 'endpoint name'}
              onChange={e => set({ prefix: e.target.value })}
            />
          </label>
        </div>
      )}
      <FieldError errors={props.errors} field="inferenceTable" />
    </fieldset>
  );
}

/** Keep a value the server sent selectable even if the list does not know it. */
function withCurrent(options: readonly string[], current: string): string[] {
  return current && !options.includes(current) ? [...options, current] : [...options];
}
