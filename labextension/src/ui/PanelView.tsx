/**
 * The panel's root view: the endpoint list (refreshing on its own) or the create/edit form.
 */

import { Notification } from '@jupyterlab/apputils';
import * as React from 'react';

import type { ServingClient } from '../client';
import { errorMessage } from '../errors';
import { emptyForm, EndpointForm, fromEndpoint, toConfig, toCreateRequest } from '../form';
import { HealthNotices } from '../health';
import { createCell, updateCell } from '../notebook';
import { Refresher } from '../refresher';
import type { Endpoint, RegisteredModel } from '../types';
import { Button, ErrorBanner } from './common';
import { EndpointActions, EndpointCard } from './EndpointCard';
import { EndpointFormView } from './EndpointForm';

/** What the view needs from JupyterLab, injected so the view itself stays plain React. */
export interface PanelServices {
  client: ServingClient;
  isVisible: () => boolean;
  /** Subscribe to the panel being shown; returns the unsubscribe function. */
  onShown: (callback: () => void) => () => void;
  confirm: (title: string, body: string, accept: string) => Promise<boolean>;
  showText: (title: string, text: string) => void;
  openInNotebook: (magicCell: string) => Promise<void>;
  /** Open the Model Serving page in the main area: the endpoints table, or one endpoint. */
  openPage?: (endpoint?: string) => void;
}

type View =
  { kind: 'list' } | { kind: 'create'; form: EndpointForm } | { kind: 'edit'; form: EndpointForm };

export function PanelView({ services }: { services: PanelServices }): JSX.Element {
  const { client } = services;
  const [endpoints, setEndpoints] = React.useState<Endpoint[] | null>(null);
  const [loadError, setLoadError] = React.useState<string | null>(null);
  const [actionError, setActionError] = React.useState<string | null>(null);
  const [view, setView] = React.useState<View>({ kind: 'list' });
  const [models, setModels] = React.useState<RegisteredModel[] | null>(null);
  const [modelsError, setModelsError] = React.useState<string | null>(null);
  const refresher = React.useRef<Refresher | null>(null);
  const notices = React.useRef(new Map<string, HealthNotices>());

  React.useEffect(() => {
    const r = new Refresher(
      () => client.listEndpointDetails(),
      services.isVisible,
      ({ endpoints, error }) => {
        if (endpoints) {
          setEndpoints(endpoints);
          void notifyHealth(client, endpoints, notices.current);
        }
        setLoadError(error ? errorMessage(error) : null);
      }
    );
    refresher.current = r;
    void r.refresh();
    const unsubscribe = services.onShown(() => void r.refresh());
    return () => {
      unsubscribe();
      r.dispose();
    };
  }, [client]);

  const refresh = (): Promise<void> => refresher.current?.refresh() ?? Promise.resolve();

  const openForm = (kind: 'create' | 'edit', form: EndpointForm): void => {
    setActionError(null);
    setView({ kind, form });
    setModels(null);
    setModelsError(null);
    client
      .registeredModels()
      .then(setModels)
      .catch(err => {
        setModels([]);
        setModelsError(errorMessage(err));
      });
  };

  /** Runs an action, shows its failure above the list, and refreshes either way. */
  const act = async (action: () => Promise<unknown>): Promise<void> => {
    setActionError(null);
    try {
      await action();
    } catch (err) {
      setActionError(errorMessage(err));
    }
    await refresh();
  };

  const actions: EndpointActions = {
    edit: endpoint => openForm('edit', fromEndpoint(endpoint)),
    cancelUpdate: endpoint => act(() => client.cancelUpdate(endpoint.name)),
    remove: async endpoint => {
      const ok = await services.confirm(
        'Delete serving endpoint',
        `Delete endpoint "${endpoint.name}"? Its replicas stop and queries to it fail from now on.`,
        'Delete'
      );
      if (ok) {
        await act(() => client.deleteEndpoint(endpoint.name));
      }
    },
    showLogs: (endpoint, served) =>
      act(async () =>
        services.showText(
          `Logs of ${endpoint.name} / ${served}`,
          await client.logs(endpoint.name, served)
        )
      ),
    openInNotebook: endpoint =>
      void act(() => services.openInNotebook(createCell(toCreateRequest(fromEndpoint(endpoint))))),
    open: services.openPage ? endpoint => services.openPage?.(endpoint.name) : undefined
  };

  const submit = async (form: EndpointForm): Promise<void> => {
    if (view.kind === 'edit') {
      await client.updateConfig(form.name, toConfig(form));
    } else {
      await client.createEndpoint(toCreateRequest(form));
    }
    setView({ kind: 'list' });
    await refresh();
  };

  if (view.kind !== 'list') {
    return (
      <div className="jp-serving-body">
        <EndpointFormView
          key={view.kind + view.form.name}
          mode={view.kind}
          initial={view.form}
          models={models}
          modelsError={modelsError}
          onSubmit={submit}
          onCancel={() => setView({ kind: 'list' })}
          onOpenInNotebook={form =>
            void services
              .openInNotebook(
                view.kind === 'edit'
                  ? updateCell(form.name, toConfig(form))
                  : createCell(toCreateRequest(form))
              )
              .catch(err => setActionError(errorMessage(err)))
          }
        />
        <ErrorBanner message={actionError} />
      </div>
    );
  }

  return (
    <div className="jp-serving-body">
      <div className="jp-serving-toolbar">
        <Button accent="primary" name="create" onClick={() => openForm('create', emptyForm())}>
          Create serving endpoint
        </Button>
        <Button name="refresh" title="Refresh now" onClick={() => void refresh()}>
          Refresh
        </Button>
        {services.openPage && (
          <Button
            name="open-page"
            title="Open the Model Serving page: charts, events, logs, inference tables"
            onClick={() => services.openPage?.()}
          >
            Open page
          </Button>
        )}
      </div>
      <ErrorBanner message={loadError && `Cannot reach the serving API: ${loadError}`} />
      <ErrorBanner message={actionError} />
      {endpoints === null ? (
        <div className="jp-serving-hint">Loading endpoints…</div>
      ) : endpoints.length === 0 ? (
        <div className="jp-serving-empty">No serving endpoints yet.</div>
      ) : (
        <ul className="jp-serving-endpoints">
          {endpoints.map(e => (
            <EndpointCard key={e.name} endpoint={e} client={client} actions={actions} />
          ))}
        </ul>
      )}
    </div>
  );
}

/**
 * A JupyterLab notification when an endpoint or served entity fails or recovers (once per change),
 * as the server's events report it (see ../health.ts); a failed read of one endpoint's events
 * announces nothing for it this time.
 */
async function notifyHealth(
  client: ServingClient,
  endpoints: Endpoint[],
  notices: Map<string, HealthNotices>
): Promise<void> {
  const names = new Set(endpoints.map(e => e.name));
  for (const name of [...notices.keys()]) {
    if (!names.has(name)) {
      notices.delete(name); // deleted: a new endpoint of that name starts with a first read
    }
  }
  await Promise.all(
    endpoints.map(async ({ name }) => {
      let watch = notices.get(name);
      if (!watch) {
        watch = new HealthNotices(name);
        notices.set(name, watch);
      }
      let events;
      try {
        events = await client.events(name, watch.sinceMs);
      } catch {
        return;
      }
      for (const change of watch.read(events)) {
        if (change.failed) {
          Notification.error(change.message, { autoClose: false });
        } else {
          Notification.success(change.message, { autoClose: 5000 });
        }
      }
    })
  );
}
