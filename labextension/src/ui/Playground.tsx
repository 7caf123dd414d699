/**
 * Query playground: JSON in, the endpoint's answer out, with the served entity that answered; the
 * endpoint's URL and ready-to-copy code for the same request.
 */

import * as React from 'react';

import { PageConfig } from '@jupyterlab/coreutils';

import type { ServingClient } from '../client';
import { errorMessage } from '../errors';
import {
  exampleFromOpenApi,
  exampleInput,
  formatResponse,
  ModelInput,
  parseInput,
  snippets,
  TOKEN_VARIABLE
} from '../playground';
import type { QueryResult } from '../types';
import { Button, ErrorBanner } from './common';

export interface PlaygroundProps {
  client: ServingClient;
  endpoint: string;
  /** Served entities that can be queried directly. */
  targets: string[];
}

/**
 * Send one request: the single place the playground talks to the endpoint, so another way of
 * sending (streaming) is one more function beside it.
 */
export function sendQuery(
  client: ServingClient,
  endpoint: string,
  body: string,
  target: string
): Promise<QueryResult> {
  return client.query(endpoint, body, target || undefined);
}

export function Playground(props: PlaygroundProps): JSX.Element {
  // The last request per endpoint survives closing the playground, as users iterate on one input.
  const [text, setText] = React.useState(() => lastInputs.get(props.endpoint) ?? exampleInput());
  const [model, setModel] = React.useState<ModelInput | null>(null);
  const [target, setTarget] = React.useState('');
  const [result, setResult] = React.useState<QueryResult | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState(false);
  const edited = React.useRef(lastInputs.has(props.endpoint));

  React.useEffect(() => {
    // Pre-fill a request the model accepts, from its signature, unless the user typed one already.
    let live = true;
    props.client
      .openapi(props.endpoint)
      .then(doc => {
        const input = exampleFromOpenApi(doc);
        if (live && input) {
          setModel(input);
          if (!edited.current) {
            setText(input.example);
          }
        }
      })
      .catch(() => undefined); // no document (an older server): the generic example stays
    return () => {
      live = false;
    };
  }, [props.endpoint]);

  const send = async (): Promise<void> => {
    setResult(null); // a failed request must not leave the previous answer on screen
    const parsed = parseInput(text);
    if (!parsed.ok) {
      setError(parsed.error);
      return;
    }
    lastInputs.set(props.endpoint, text);
    setError(null);
    setBusy(true);
    try {
      setResult(await sendQuery(props.client, props.endpoint, parsed.body, target));
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="jp-serving-playground" data-endpoint={props.endpoint}>
      <label className="jp-serving-label">
        Request
        <textarea
          className="jp-mod-styled jp-serving-input jp-serving-playground-input"
          name="request"
          rows={8}
          spellCheck={false}
          value={text}
          onChange={e => {
            edited.current = true;
            setText(e.target.value);
          }}
        />
      </label>
      <div className="jp-serving-playground-controls">
        <select
          className="jp-mod-styled"
          name="target"
          value={target}
          title="Query the endpoint (traffic split) or one served entity"
          onChange={e => setTarget(e.target.value)}
        >
          <option value="">Endpoint (traffic split)</option>
          {props.targets.map(t => (
            <option key={t} value={t}>
              {t} only
            </option>
          ))}
        </select>
        <Button accent="primary" name="send-query" disabled={busy} onClick={() => void send()}>
          {busy ? 'Sending…' : 'Send request'}
        </Button>
      </div>
      <ErrorBanner message={error} />
      {result && (
        <div className="jp-serving-playground-result" data-status={result.status}>
          <div className="jp-serving-hint">
            {result.status} · {Math.round(result.elapsedMs)} ms
            {result.servedModelName ? ` · served by ${result.servedModelName}` : ''}
          </div>
          <pre className={`jp-serving-response${result.ok ? '' : ' jp-mod-error'}`}>
            {formatResponse(result.body)}
          </pre>
        </div>
      )}
      <UseEndpoint endpoint={props.endpoint} body={text} chat={model?.chat ?? false} />
    </div>
  );
}

/** The endpoint URL and code for the request in the editor, as Databricks' "Use" dialog shows. */
function UseEndpoint(props: { endpoint: string; body: string; chat: boolean }): JSX.Element {
  const server = new URL(PageConfig.getBaseUrl(), window.location.href).href;
  const url = `${server.replace(/\/+$/, '')}/serving-endpoints/${encodeURIComponent(props.endpoint)}/invocations`;
  const [chosen, setChosen] = React.useState('curl');
  const [copied, setCopied] = React.useState('');
  const code = React.useMemo(() => {
    try {
      return snippets(server, props.endpoint, props.body, props.chat);
    } catch {
      return null; // the editor holds invalid JSON: no code until it parses
    }
  }, [server, props.endpoint, props.body, props.chat]);
  const shown = code?.find(s => s.id === chosen) ?? code?.[0];
  const copy = (text: string, what: string): void => {
    void navigator.clipboard?.writeText(text).then(() => setCopied(what));
  };
  return (
    <section className="jp-serving-use" aria-label="Use this endpoint">
      <h3 className="jp-serving-section-title">Use this endpoint</h3>
      <div className="jp-serving-use-url">
        <code data-endpoint-url={url}>{url}</code>
        <Button name="copy-url" onClick={() => copy(url, 'url')}>
          {copied === 'url' ? 'Copied' : 'Copy URL'}
        </Button>
      </div>
      <div className="jp-serving-hint">
        The snippets read the token from <code>${TOKEN_VARIABLE}</code> (a Jupyter or serving
        token); it is never written into them.
      </div>
      {code && shown ? (
        <>
          <div className="jp-serving-snippet-tabs" role="tablist">
            {code.map(s => (
              <button
                key={s.id}
                role="tab"
                name={`snippet-${s.id}`}
                aria-selected={s.id === shown.id}
                className={`jp-serving-snippet-tab${s.id === shown.id ? ' jp-mod-active' : ''}`}
                onClick={() => setChosen(s.id)}
              >
                {s.title}
              </button>
            ))}
            <Button name="copy-snippet" onClick={() => copy(shown.code, shown.id)}>
              {copied === shown.id ? 'Copied' : 'Copy'}
            </Button>
          </div>
          <pre className="jp-serving-snippet" data-snippet={shown.id}>
            {shown.code}
          </pre>
        </>
      ) : (
        <div className="jp-serving-hint">Fix the request's JSON to see the code.</div>
      )}
    </section>
  );
}

const lastInputs = new Map<string, string>();
