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
import { StreamResult, streamingInput } from '../stream';
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

/** Send one request with `"stream": true`: each chunk's text goes to `onText` as it arrives. */
export function sendStream(
  client: ServingClient,
  endpoint: string,
  body: string,
  target: string,
  onText: (text: string) => void,
  signal: AbortSignal
): Promise<StreamResult> {
  return client.queryStream(endpoint, body, onText, target || undefined, signal);
}

/** A streamed answer: its text so far, and how it ended once it has. */
interface Streamed {
  text: string;
  result: StreamResult | null;
}

export function Playground(props: PlaygroundProps): JSX.Element {
  // The last request per endpoint survives closing the playground, as users iterate on one input.
  const [text, setText] = React.useState(() => lastInputs.get(props.endpoint) ?? exampleInput());
  const [model, setModel] = React.useState<ModelInput | null>(null);
  const [target, setTarget] = React.useState('');
  const [result, setResult] = React.useState<QueryResult | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState(false);
  // Agents and LLMs can stream their answer; the box is on for them, absent for other models.
  const [streamable, setStreamable] = React.useState(false);
  const [stream, setStream] = React.useState(true);
  const [streamed, setStreamed] = React.useState<Streamed | null>(null);
  const stopper = React.useRef<AbortController | null>(null);
  const edited = React.useRef(lastInputs.has(props.endpoint));
  React.useEffect(() => () => stopper.current?.abort(), []); // leaving the tab stops a stream

  React.useEffect(() => {
    // Pre-fill a request the model accepts, from its signature, unless the user typed one already.
    let live = true;
    props.client
      .openapi(props.endpoint)
      .then(doc => {
        const streaming = streamingInput(doc);
        const input = streaming ?? exampleFromOpenApi(doc);
        if (live) {
          setStreamable(streaming !== null);
        }
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
    setStreamed(null);
    const parsed = parseInput(text);
    if (!parsed.ok) {
      setError(parsed.error);
      return;
    }
    lastInputs.set(props.endpoint, text);
    setError(null);
    setBusy(true);
    try {
      if (streamable && stream) {
        await runStream(parsed.body);
      } else {
        setResult(await sendQuery(props.client, props.endpoint, parsed.body, target));
      }
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      stopper.current = null;
      setBusy(false);
    }
  };

  const runStream = async (body: string): Promise<void> => {
    const controller = new AbortController();
    stopper.current = controller;
    setStreamed({ text: '', result: null });
    const append = (piece: string): void =>
      setStreamed(s => ({ text: (s?.text ?? '') + piece, result: null }));
    const ended = await sendStream(
      props.client,
      props.endpoint,
      body,
      target,
      append,
      controller.signal
    );
    if (!ended.streamed && !ended.aborted) {
      // The server answered in one piece (a 400 for a bad request): show it as any answer.
      setStreamed(null);
      setResult({ ...ended, ok: ended.ok });
      return;
    }
    setStreamed({ text: ended.body, result: ended });
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
        {streamable && (
          <label className="jp-serving-playground-stream" title="Show the answer as it is written">
            <input
              type="checkbox"
              name="stream"
              checked={stream}
              disabled={busy}
              onChange={e => setStream(e.target.checked)}
            />{' '}
            Stream
          </label>
        )}
        <Button accent="primary" name="send-query" disabled={busy} onClick={() => void send()}>
          {busy ? (streamed ? 'Streaming…' : 'Sending…') : 'Send request'}
        </Button>
        {busy && streamed && (
          <Button name="stop-query" onClick={() => stopper.current?.abort()}>
            Stop
          </Button>
        )}
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
      {streamed && <StreamedAnswer streamed={streamed} />}
      <UseEndpoint endpoint={props.endpoint} body={text} chat={model?.chat ?? false} />
    </div>
  );
}

/** A streamed answer as it grows; then how it ended (finished, stopped, or the error event). */
function StreamedAnswer(props: { streamed: Streamed }): JSX.Element {
  const { text, result } = props.streamed;
  const state = !result
    ? 'streaming'
    : result.error
      ? 'error'
      : result.aborted
        ? 'stopped'
        : result.done
          ? 'done'
          : 'cut-off';
  return (
    <div className="jp-serving-playground-result jp-serving-stream-result" data-stream={state}>
      <div className="jp-serving-hint">
        {!result
          ? 'Streaming…'
          : `${result.status || '-'} · ${Math.round(result.elapsedMs)} ms · ${
              {
                error: 'failed',
                stopped: 'stopped',
                done: 'streamed',
                'cut-off': 'the stream ended early',
                streaming: ''
              }[state]
            }${result.servedModelName ? ` · served by ${result.servedModelName}` : ''}`}
      </div>
      <pre className="jp-serving-response jp-serving-stream-text" aria-live="polite">
        {text}
      </pre>
      {result?.error && (
        <pre className="jp-serving-response jp-mod-error" data-error-code={result.error.error_code}>
          {`${result.error.error_code}: ${result.error.message}`}
        </pre>
      )}
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
