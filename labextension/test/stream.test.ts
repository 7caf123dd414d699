import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { Transport } from '../src/client';
import { parseInput } from '../src/playground';
import { chunkText, SseParser, streamError, streamingInput, streamQuery } from '../src/stream';

/** A response whose body arrives in the given pieces, one network read each. */
function sse(pieces: string[], status = 200): Response {
  const encoder = new TextEncoder();
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const p of pieces) {
        controller.enqueue(encoder.encode(p));
      }
      controller.close();
    }
  });
  return new Response(body, {
    status,
    headers: { 'Content-Type': 'text/event-stream', 'served-model-name': 'agent-1' }
  });
}

const delta = (text: string): string =>
  `data: ${JSON.stringify({ type: 'response.output_text.delta', delta: text, item_id: 'm' })}\n\n`;

describe('SseParser', () => {
  it('joins lines split across reads, CRLF endings included', () => {
    const parser = new SseParser();
    assert.deepEqual(parser.push('data: {"a"'), []);
    assert.deepEqual(parser.push(': 1}\r'), []);
    assert.deepEqual(parser.push('\n\r\nda'), [{ event: null, data: '{"a": 1}' }]);
    assert.deepEqual(parser.push('ta: [DONE]\n\n'), [{ event: null, data: '[DONE]' }]);
    assert.deepEqual(parser.end(), []);
  });

  it('reads named events, multi-line data and a last event without its blank line', () => {
    const parser = new SseParser();
    const events = parser.push(': comment\nevent: error\ndata: {"x":\ndata:1}\n\ndata: tail');
    assert.deepEqual(events, [{ event: 'error', data: '{"x":\n1}' }]);
    assert.deepEqual(parser.end(), [{ event: null, data: 'tail' }]);
  });
});

describe('chunkText', () => {
  it('reads agent deltas, chat chunks, completions, ChatAgent deltas and strings', () => {
    assert.equal(chunkText({ type: 'response.output_text.delta', delta: 'hi' }), 'hi');
    assert.equal(chunkText({ type: 'response.output_item.done', item: { text: 'x' } }), '');
    assert.equal(chunkText({ choices: [{ delta: { content: 'yo' } }] }), 'yo');
    assert.equal(chunkText({ choices: [{ delta: { role: 'assistant' } }] }), '');
    assert.equal(chunkText({ choices: [{ text: 'done' }] }), 'done');
    assert.equal(chunkText({ delta: { content: 'agent' } }), 'agent');
    assert.equal(chunkText('plain'), 'plain');
    assert.equal(chunkText(3), '');
    assert.equal(chunkText(null), '');
  });

  it('keeps a non-JSON error body as the message', () => {
    assert.deepEqual(streamError('{"error_code":"BAD_REQUEST","message":"no"}'), {
      error_code: 'BAD_REQUEST',
      message: 'no'
    });
    assert.deepEqual(streamError('boom'), { error_code: 'INTERNAL_ERROR', message: 'boom' });
  });
});

describe('streamQuery', () => {
  it('sends stream: true and hands over each chunk as it is read, up to [DONE]', async () => {
    const calls: RequestInit[] = [];
    const transport: Transport = async (_path, init) => {
      calls.push(init);
      // A chunk split mid-JSON, two chunks in one read, and events after [DONE] (ignored).
      const first = delta('echo:');
      return sse([
        first.slice(0, 20),
        first.slice(20),
        delta(' big') + delta(' world'),
        'data: [DONE]\n\n',
        delta('!')
      ]);
    };
    const seen: string[] = [];
    const result = await streamQuery(transport, 'p', '{"input":[]}', t => seen.push(t));
    assert.equal(calls[0].body, '{"input":[],"stream":true}');
    assert.deepEqual(seen, ['echo:', ' big', ' world']);
    assert.equal(result.body, 'echo: big world');
    assert.equal(result.done, true);
    assert.equal(result.streamed, true);
    assert.equal(result.ok, true);
    assert.equal(result.servedModelName, 'agent-1');
  });

  it('ends on an error event with the text so far and the error', async () => {
    const transport: Transport = async () =>
      sse([
        delta('echo:'),
        'event: error\ndata: {"error_code":"INTERNAL_ERROR","message":"agent failed"}\n\n'
      ]);
    const result = await streamQuery(transport, 'p', '{}', () => undefined);
    assert.equal(result.body, 'echo:');
    assert.equal(result.ok, false);
    assert.equal(result.done, false);
    assert.deepEqual(result.error, { error_code: 'INTERNAL_ERROR', message: 'agent failed' });
  });

  it('answers a plain error body (a 400 before any stream) as it came', async () => {
    const transport: Transport = async () =>
      new Response('{"error_code":"BAD_REQUEST","message":"bad"}', {
        status: 400,
        headers: { 'Content-Type': 'application/json' }
      });
    const result = await streamQuery(transport, 'p', '{}', () => assert.fail('no text'));
    assert.equal(result.streamed, false);
    assert.equal(result.status, 400);
    assert.match(result.body, /BAD_REQUEST/);
  });

  it('stops when aborted, keeping the text read so far', async () => {
    const controller = new AbortController();
    const encoder = new TextEncoder();
    const transport: Transport = async (_path, init) => {
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(encoder.encode(delta('first')));
          // Never closes: only the abort ends it, as fetch errors the body when its signal fires.
          init.signal?.addEventListener('abort', () => c.error(new Error('aborted')));
        }
      });
      return new Response(body, { headers: { 'Content-Type': 'text/event-stream' } });
    };
    const result = await streamQuery(
      transport,
      'p',
      '{}',
      () => controller.abort(),
      controller.signal
    );
    assert.equal(result.aborted, true);
    assert.equal(result.body, 'first');
    assert.equal(result.done, false);
  });
});

describe('streamingInput', () => {
  const doc = (columns: string[]) => ({
    paths: {
      '/served-models/a/invocations': {
        post: {
          requestBody: {
            content: {
              'application/json': {
                schema: {
                  oneOf: [
                    {
                      properties: {
                        dataframe_records: {
                          items: {
                            properties: Object.fromEntries(
                              columns.map(c => [c, { type: 'string' }])
                            )
                          }
                        }
                      }
                    }
                  ]
                }
              }
            }
          }
        }
      }
    }
  });

  it('offers streaming to agents, chat and completion models only', () => {
    const agent = streamingInput(doc(['input', 'custom_inputs']));
    assert.deepEqual(JSON.parse(agent!.example), { input: [{ role: 'user', content: 'Hello!' }] });
    assert.equal(agent!.chat, true); // a ResponsesAgent answers the OpenAI client's responses.create
    assert.equal(streamingInput(doc(['messages', 'temperature']))?.chat, true);
    assert.deepEqual(JSON.parse(streamingInput(doc(['prompt']))!.example), { prompt: 'Hello!' });
    assert.equal(streamingInput(doc(['x', 'y'])), null);
    assert.equal(streamingInput({ paths: {} }), null);
    // The playground's check lets agent and LLM requests through.
    assert.equal(parseInput(agent!.example).ok, true);
    assert.equal(parseInput('{"messages": []}').ok, true);
    assert.equal(parseInput('{"prompt": "hi"}').ok, true);
  });
});
