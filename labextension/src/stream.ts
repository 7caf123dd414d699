/**
 * Streaming queries for agents and LLMs: `"stream": true` makes the invocations route answer
 * `text/event-stream` (one `data: <json>` event per chunk the model yields, then `data: [DONE]`;
 * a failure mid-stream is `event: error` with a Databricks error body). The parsing mirrors
 * jupyter_serving/notebook/client.py (`sse_events`, `stream_chunks`, `chunk_text`), so the page
 * and the notebook client read a stream the same way.
 *
 * Pure logic on a `Transport` (no JupyterLab import), so it is unit-tested under Node.
 */

import type { Transport } from './client';
import type { OpenApiDoc } from './playground';

/** One Server-Sent Event: `event` is null for plain `data:` events. */
export interface SseEvent {
  event: string | null;
  data: string;
}

/**
 * Incremental SSE parser. Network reads split the text anywhere (inside a line, between `\r` and
 * `\n`), so a partial last line is kept until the next `push`; an event ends at a blank line.
 */
export class SseParser {
  private buffer = '';
  private event: string | null = null;
  private data: string[] = [];

  /** Feed decoded text; answers the events completed by it. */
  push(text: string): SseEvent[] {
    this.buffer += text;
    const out: SseEvent[] = [];
    let start = 0;
    for (;;) {
      const end = this.buffer.indexOf('\n', start);
      if (end < 0) {
        break;
      }
      const line = this.buffer.slice(start, end).replace(/\r$/, '');
      start = end + 1;
      this.line(line, out);
    }
    this.buffer = this.buffer.slice(start);
    return out;
  }

  /** The body ended: a last event without its blank line still counts (as the Python client). */
  end(): SseEvent[] {
    const out: SseEvent[] = [];
    if (this.buffer) {
      this.line(this.buffer.replace(/\r$/, ''), out);
      this.buffer = '';
    }
    this.line('', out);
    return out;
  }

  private line(line: string, out: SseEvent[]): void {
    if (!line) {
      if (this.data.length) {
        out.push({ event: this.event, data: this.data.join('\n') });
      }
      this.event = null;
      this.data = [];
    } else if (line.startsWith('event:')) {
      this.event = line.slice(6).trim();
    } else if (line.startsWith('data:')) {
      const value = line.slice(5);
      this.data.push(value.startsWith(' ') ? value.slice(1) : value);
    } // comments (`:`), `id:` and `retry:` lines carry nothing the playground shows
  }
}

/**
 * The text a streamed chunk adds: a ResponsesAgent's `response.output_text.delta`, a chat chunk's
 * `choices[0].delta.content` (or a completion's `choices[0].text`), a ChatAgent chunk's
 * `delta.content`, or a plain string. Other chunks (`response.output_item.done`, tool calls) add
 * nothing: their text already arrived as deltas.
 */
export function chunkText(chunk: unknown): string {
  if (typeof chunk === 'string') {
    return chunk;
  }
  if (!chunk || typeof chunk !== 'object' || Array.isArray(chunk)) {
    return '';
  }
  const c = chunk as Record<string, unknown>;
  if (c.type === 'response.output_text.delta') {
    return c.delta ? String(c.delta) : '';
  }
  const choices = c.choices;
  if (Array.isArray(choices) && choices.length && isObject(choices[0])) {
    const first = choices[0];
    const delta = isObject(first.delta) ? first.delta : {};
    const text = delta.content;
    if (text !== undefined && text !== null) {
      return String(text);
    }
    return first.text ? String(first.text) : '';
  }
  if (isObject(c.delta) && typeof c.delta.content === 'string') {
    return c.delta.content;
  }
  return '';
}

function isObject(value: unknown): value is Record<string, unknown> {
  return !!value && typeof value === 'object' && !Array.isArray(value);
}

/** A Databricks error body, as an `event: error` carries it. */
export interface StreamError {
  error_code: string;
  message: string;
}

/** The error an `event: error` reports; a body that is not the JSON form is kept as the message. */
export function streamError(data: string): StreamError {
  try {
    const body = JSON.parse(data) as Partial<StreamError>;
    if (body && typeof body === 'object') {
      return {
        error_code: String(body.error_code ?? 'INTERNAL_ERROR'),
        message: String(body.message ?? data)
      };
    }
  } catch {
    // not JSON: fall through
  }
  return { error_code: 'INTERNAL_ERROR', message: data };
}

/** How a streamed query ended. */
export interface StreamResult {
  status: number;
  ok: boolean;
  /** True when the answer was an event stream; false for a plain answer (e.g. a 400 before it). */
  streamed: boolean;
  /** The streamed text, or the whole body of a plain answer. */
  body: string;
  /** The error event that ended the stream, if one did. */
  error: StreamError | null;
  /** The `[DONE]` event arrived: the model finished (not cut off or stopped). */
  done: boolean;
  /** Stopped by the caller's AbortSignal. */
  aborted: boolean;
  servedModelName: string | null;
  requestId: string | null;
  elapsedMs: number;
}

/** The request body with `"stream": true` added (`body` is the playground's checked JSON). */
export function streamingBody(body: string): string {
  return JSON.stringify({ ...(JSON.parse(body) as object), stream: true });
}

/**
 * POST a streaming query and hand each chunk's text to `onText` as it arrives. Stopping through
 * `signal` resolves with `aborted: true` and the text so far; a plain (non-stream) answer, such as
 * the server's 400 for a bad request, resolves with its body, as `ServingClient.query` does.
 */
export async function streamQuery(
  transport: Transport,
  path: string,
  body: string,
  onText: (text: string) => void,
  signal?: AbortSignal,
  now: () => number = () => Date.now()
): Promise<StreamResult> {
  const started = now();
  let response: Response;
  try {
    response = await transport(path, {
      method: 'POST',
      body: streamingBody(body),
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      signal
    });
  } catch (err) {
    if (signal?.aborted) {
      return ended(null, '', { aborted: true, streamed: false });
    }
    throw err;
  }
  const result = (
    text: string,
    extra: Partial<StreamResult> & { streamed: boolean }
  ): StreamResult => ended(response, text, extra);
  function ended(r: Response | null, text: string, extra: Partial<StreamResult>): StreamResult {
    return {
      status: r?.status ?? 0,
      ok: r?.ok ?? false,
      streamed: false,
      body: text,
      error: null,
      done: false,
      aborted: false,
      servedModelName: r?.headers.get('served-model-name') ?? null,
      requestId: r?.headers.get('x-request-id') ?? null,
      elapsedMs: now() - started,
      ...extra
    };
  }
  const type = response.headers.get('content-type') ?? '';
  if (!type.startsWith('text/event-stream') || !response.body) {
    return result(await response.text(), { streamed: false });
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  let text = '';
  // Answers true once the stream is over ([DONE] or an error event).
  const take = (events: SseEvent[]): StreamResult | null => {
    for (const e of events) {
      if (e.event === 'error') {
        return result(text, { streamed: true, ok: false, error: streamError(e.data) });
      }
      if (e.data === '[DONE]') {
        return result(text, { streamed: true, done: true });
      }
      let chunk: unknown;
      try {
        chunk = JSON.parse(e.data);
      } catch {
        chunk = e.data; // a bare text event
      }
      const piece = chunkText(chunk);
      if (piece) {
        text += piece;
        onText(piece);
      }
    }
    return null;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        break;
      }
      const over = take(parser.push(decoder.decode(value, { stream: true })));
      if (over) {
        void reader.cancel().catch(() => undefined);
        return over;
      }
    }
    const over = take([...parser.push(decoder.decode()), ...parser.end()]);
    return over ?? result(text, { streamed: true });
  } catch (err) {
    if (signal?.aborted) {
      return result(text, { streamed: true, aborted: true });
    }
    throw err;
  }
}

/**
 * Whether the served model streams (a ResponsesAgent's `input`, a chat model's `messages`, a
 * completions model's `prompt` in its signature) and a first request for it. Null for other
 * models, which answer predictions in one piece.
 */
export function streamingInput(doc: OpenApiDoc): { example: string; chat: boolean } | null {
  const first = Object.values(doc.paths ?? {})[0];
  const schema = first?.post?.requestBody?.content?.['application/json']?.schema;
  const records = (schema?.oneOf ?? []).find(v => v.properties?.dataframe_records)?.properties
    ?.dataframe_records?.items;
  const columns = Object.keys(records?.properties ?? {});
  const hello = [{ role: 'user', content: 'Hello!' }];
  if (columns.includes('input')) {
    return { example: JSON.stringify({ input: hello }, null, 2), chat: true }; // OpenAI Responses
  }
  if (columns.includes('messages')) {
    return { example: JSON.stringify({ messages: hello }, null, 2), chat: true };
  }
  if (columns.includes('prompt')) {
    return { example: JSON.stringify({ prompt: 'Hello!' }, null, 2), chat: false };
  }
  return null;
}
