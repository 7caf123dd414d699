/**
 * Query playground: JSON in, the endpoint's answer out, with the served entity that answered.
 */

import * as React from 'react';

import type { ServingClient } from '../client';
import { errorMessage } from '../errors';
import { exampleInput, formatResponse, parseInput } from '../playground';
import type { QueryResult } from '../types';
import { Button, ErrorBanner } from './common';

export interface PlaygroundProps {
  client: ServingClient;
  endpoint: string;
  /** Served entities that can be queried directly. */
  targets: string[];
}

export function Playground(props: PlaygroundProps): JSX.Element {
  // The last request per endpoint survives closing the playground, as users iterate on one input.
  const [text, setText] = React.useState(() => lastInputs.get(props.endpoint) ?? exampleInput());
  const [target, setTarget] = React.useState('');
  const [result, setResult] = React.useState<QueryResult | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const [busy, setBusy] = React.useState(false);

  const send = async (): Promise<void> => {
    const parsed = parseInput(text);
    if (!parsed.ok) {
      setError(parsed.error);
      return;
    }
    lastInputs.set(props.endpoint, text);
    setError(null);
    setBusy(true);
    try {
      setResult(await props.client.query(props.endpoint, parsed.body, target || undefined));
    } catch (err) {
      setResult(null);
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
          rows={6}
          spellCheck={false}
          value={text}
          onChange={e => setText(e.target.value)}
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
    </div>
  );
}

const lastInputs = new Map<string, string>();
