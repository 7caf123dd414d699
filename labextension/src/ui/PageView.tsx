/**
 * The Model Serving page in the main area: the endpoints table, one endpoint's tabs, or the
 * create/edit form laid out for a full page. Navigation can also come from outside (the sidebar).
 */

import * as React from 'react';

import type { ServingClient } from '../client';
import { errorMessage } from '../errors';
import { emptyForm, EndpointForm, fromEndpoint, toConfig, toCreateRequest } from '../form';
import { latest, Latest } from '../history';
import { createCell, updateCell } from '../notebook';
import type { Endpoint, RegisteredModel } from '../types';
import { ErrorBanner } from './common';
import { EndpointDetail, Tab } from './EndpointDetail';
import { EndpointFormView } from './EndpointForm';
import { EndpointsTable } from './EndpointsTable';
import { usePoll } from './usePoll';

export type Place =
  | { kind: 'list' }
  | { kind: 'detail'; name: string; tab: Tab }
  | { kind: 'create'; form: EndpointForm }
  | { kind: 'edit'; form: EndpointForm; back: Place };

export interface PageServices {
  client: ServingClient;
  isVisible: () => boolean;
  /** Subscribe to navigation requests from outside the page; returns the unsubscribe function. */
  onNavigate: (callback: (place: Place) => void) => () => void;
  confirm: (title: string, body: string, accept: string) => Promise<boolean>;
  openInNotebook: (magicCell: string) => Promise<void>;
}

const LIST_POLL_MS = 2000;
/** The table shows rates of the last samples only: ask for a short window, not the whole hour. */
const RECENT_MS = 10_000;

export function PageView({
  services,
  initial
}: {
  services: PageServices;
  initial: Place;
}): JSX.Element {
  const [place, setPlace] = React.useState<Place>(initial);
  React.useEffect(() => services.onNavigate(setPlace), [services]);
  const [error, setError] = React.useState<string | null>(null);

  const openInNotebook = (cell: string): void =>
    void services.openInNotebook(cell).catch(err => setError(errorMessage(err)));

  if (place.kind === 'create' || place.kind === 'edit') {
    return (
      <div className="jp-serving-page-section jp-serving-page-form">
        <FormPage services={services} place={place} onDone={setPlace} onNotebook={openInNotebook} />
        <ErrorBanner message={error} />
      </div>
    );
  }
  if (place.kind === 'detail') {
    return (
      <EndpointDetail
        key={place.name}
        services={{
          ...services,
          openInNotebook: e => openInNotebook(createCell(toCreateRequest(fromEndpoint(e))))
        }}
        name={place.name}
        tab={place.tab}
        onTab={tab => setPlace({ ...place, tab })}
        onBack={() => setPlace({ kind: 'list' })}
        onEdit={e => setPlace({ kind: 'edit', form: fromEndpoint(e), back: place })}
      />
    );
  }
  return (
    <ListPage
      services={services}
      onOpen={name => setPlace({ kind: 'detail', name, tab: 'overview' })}
      onCreate={() => setPlace({ kind: 'create', form: emptyForm() })}
    />
  );
}

function ListPage(props: {
  services: PageServices;
  onOpen: (name: string) => void;
  onCreate: () => void;
}): JSX.Element {
  const { client } = props.services;
  const [endpoints, setEndpoints] = React.useState<Endpoint[] | null>(null);
  const [live, setLive] = React.useState<Map<string, Latest>>(new Map());
  const [error, setError] = React.useState<string | null>(null);
  usePoll(
    async () => {
      try {
        const list = await client.listEndpointDetails();
        const since = Date.now() - RECENT_MS;
        const histories = await Promise.all(
          list.map(e => client.history(e.name, since).catch(() => null))
        );
        setEndpoints(list);
        setLive(new Map(list.map((e, i) => [e.name, latest(histories[i])])));
        setError(null);
      } catch (err) {
        setError(`Cannot reach the serving API: ${errorMessage(err)}`);
      }
    },
    LIST_POLL_MS,
    props.services.isVisible,
    [client]
  );
  return (
    <>
      <ErrorBanner message={error} />
      {endpoints === null ? (
        <div className="jp-serving-page-section jp-serving-hint">Loading endpoints…</div>
      ) : (
        <EndpointsTable
          endpoints={endpoints}
          latest={live}
          nowMs={Date.now()}
          onOpen={props.onOpen}
          onCreate={props.onCreate}
        />
      )}
    </>
  );
}

function FormPage(props: {
  services: PageServices;
  place: Extract<Place, { kind: 'create' | 'edit' }>;
  onDone: (place: Place) => void;
  onNotebook: (cell: string) => void;
}): JSX.Element {
  const { client } = props.services;
  const { place } = props;
  const [models, setModels] = React.useState<RegisteredModel[] | null>(null);
  const [modelsError, setModelsError] = React.useState<string | null>(null);
  React.useEffect(() => {
    client
      .registeredModels()
      .then(setModels)
      .catch(err => {
        setModels([]);
        setModelsError(errorMessage(err));
      });
  }, [client]);
  const back: Place = place.kind === 'edit' ? place.back : { kind: 'list' };
  return (
    <EndpointFormView
      key={place.kind + place.form.name}
      mode={place.kind}
      initial={place.form}
      models={models}
      modelsError={modelsError}
      onSubmit={async form => {
        if (place.kind === 'edit') {
          await client.updateConfig(form.name, toConfig(form));
        } else {
          await client.createEndpoint(toCreateRequest(form));
        }
        props.onDone({ kind: 'detail', name: form.name, tab: 'overview' });
      }}
      onCancel={() => props.onDone(back)}
      onOpenInNotebook={form =>
        props.onNotebook(
          place.kind === 'edit'
            ? updateCell(form.name, toConfig(form))
            : createCell(toCreateRequest(form))
        )
      }
    />
  );
}
