/**
 * A simulated OpenAI-compatible upstream for `tollgate demo`: streaming Responses
 * (`POST /v1/responses`) and Chat Completions (`POST /v1/chat/completions`) on loopback, in the
 * providers' wire format, with usage worked out from the request the way a provider would count it.
 *
 * - Input tokens: about one per four characters of the prompt's text, plus 765 per image (what
 *   OpenAI counts for a 1024×1024 image at high detail). An image is fetched by URL, so the
 *   gateway's byte-based estimate cannot see it coming: that is how real over-runs happen.
 * - Output tokens: one per word, a count between 16 and 400 derived from a hash of the request
 *   body (the same request always gets the same answer), cut at the request's own output limit.
 *   A cut answer ends as OpenAI's do: `incomplete` (Responses) or `finish_reason: "length"`.
 * - Reasoning models (o-series, gpt-5) spend half of their output tokens on reasoning.
 * - Chat streams carry usage only when the request asks for it (`stream_options.include_usage`).
 *
 * Faults are asked for with the `x-simulator-fault` request header (the gateway forwards
 * end-to-end headers as they are): `server_error` answers 500 like OpenAI does, `reset` closes the
 * connection half-way through the stream. Non-streaming requests are not simulated (400).
 */
import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const FAULT_HEADER = 'x-simulator-fault';
export type Fault = 'server_error' | 'reset';

export interface SimulatorOptions {
  /** Pause between two streamed events, so that a client can leave mid-stream. Default 2 ms. */
  eventDelayMs?: number;
}

export interface Simulator {
  /** Base URL, e.g. `http://127.0.0.1:41234`: the gateway's `openaiUpstream`. */
  url: string;
  close(): Promise<void>;
}

/** What OpenAI counts for one 1024×1024 image at high detail (85 base + 4 tiles × 170). */
const IMAGE_TOKENS = 765;
const CHARS_PER_TOKEN = 4;
const MIN_OUTPUT_TOKENS = 16;
const MAX_OUTPUT_TOKENS = 400;
const WORDS_PER_EVENT = 8;
const WORDS = 'the gateway reserves credits before each request and settles the real cost once the usage is known'.split(' ');

interface Counted {
  inputTokens: number;
  /** Output tokens the model produces, already cut at the request's limit. */
  outputTokens: number;
  reasoningTokens: number;
  /** True when the request's output limit cut the answer short. */
  truncated: boolean;
}

/** Text characters and images anywhere in the request's prompt (input, messages, instructions). */
function measurePrompt(value: unknown, key = ''): { chars: number; images: number } {
  if (typeof value === 'string') {
    return ['input', 'instructions', 'content', 'text'].includes(key) ? { chars: value.length, images: 0 } : { chars: 0, images: 0 };
  }
  if (value === null || typeof value !== 'object') return { chars: 0, images: 0 };
  const type = (value as { type?: unknown }).type;
  let total = { chars: 0, images: type === 'input_image' || type === 'image_url' ? 1 : 0 };
  for (const [childKey, child] of Object.entries(value)) {
    // Array elements inherit their array's key: `content: [{…}, …]`, `input: ['…']`.
    const measured = measurePrompt(child, Array.isArray(value) ? key : childKey);
    total = { chars: total.chars + measured.chars, images: total.images + measured.images };
  }
  return total;
}

function count(body: Record<string, unknown>, raw: Buffer): Counted {
  const { chars, images } = measurePrompt(body);
  const limit = [body.max_output_tokens, body.max_completion_tokens, body.max_tokens].find((value) => typeof value === 'number') as
    | number
    | undefined;
  const wanted = MIN_OUTPUT_TOKENS + (createHash('sha256').update(raw).digest().readUInt32BE(0) % (MAX_OUTPUT_TOKENS - MIN_OUTPUT_TOKENS + 1));
  const outputTokens = limit === undefined ? wanted : Math.min(wanted, limit);
  const reasoning = /^(o\d|gpt-5)/.test(String(body.model));
  return {
    inputTokens: Math.ceil(chars / CHARS_PER_TOKEN) + images * IMAGE_TOKENS,
    outputTokens,
    reasoningTokens: reasoning ? Math.floor(outputTokens / 2) : 0,
    truncated: outputTokens < wanted,
  };
}

/** The visible answer: one word per output token that is not reasoning, in events of a few words. */
function answerDeltas(counted: Counted): string[] {
  const words = Array.from({ length: counted.outputTokens - counted.reasoningTokens }, (_, i) => WORDS[i % WORDS.length]!);
  const deltas: string[] = [];
  for (let i = 0; i < words.length; i += WORDS_PER_EVENT) deltas.push((i === 0 ? '' : ' ') + words.slice(i, i + WORDS_PER_EVENT).join(' '));
  return deltas;
}

const sse = (event: string | undefined, data: unknown) =>
  `${event === undefined ? '' : `event: ${event}\n`}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;

function responsesEvents(body: Record<string, unknown>, counted: Counted, id: string): string[] {
  const deltas = answerDeltas(counted);
  const text = deltas.join('');
  const status = counted.truncated ? 'incomplete' : 'completed';
  let sequence = 0;
  const event = (type: string, fields: Record<string, unknown>) => sse(type, { type, sequence_number: sequence++, ...fields });
  const response = (state: string, extra: Record<string, unknown> = {}) => ({
    id,
    object: 'response',
    created_at: Math.floor(Date.now() / 1000),
    status: state,
    model: body.model,
    output: [],
    usage: null,
    ...extra,
  });
  const part = { item_id: `msg_${id}`, output_index: 0, content_index: 0 };
  const message = (state: string, content: unknown[]) => ({ id: `msg_${id}`, type: 'message', role: 'assistant', status: state, content });
  const finalText = { type: 'output_text', text, annotations: [] };
  return [
    event('response.created', { response: response('in_progress') }),
    event('response.in_progress', { response: response('in_progress') }),
    event('response.output_item.added', { output_index: 0, item: message('in_progress', []) }),
    event('response.content_part.added', { ...part, part: { type: 'output_text', text: '', annotations: [] } }),
    ...deltas.map((delta) => event('response.output_text.delta', { ...part, delta, logprobs: [] })),
    event('response.output_text.done', { ...part, text, logprobs: [] }),
    event('response.content_part.done', { ...part, part: finalText }),
    event('response.output_item.done', { output_index: 0, item: message(status, [finalText]) }),
    event(`response.${status}`, {
      response: response(status, {
        output: [message(status, [finalText])],
        incomplete_details: counted.truncated ? { reason: 'max_output_tokens' } : null,
        usage: {
          input_tokens: counted.inputTokens,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: counted.outputTokens,
          output_tokens_details: { reasoning_tokens: counted.reasoningTokens },
          total_tokens: counted.inputTokens + counted.outputTokens,
        },
      }),
    }),
  ];
}

function chatEvents(body: Record<string, unknown>, counted: Counted, id: string): string[] {
  const includeUsage = (body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
  const chunk = (choices: unknown[], usage: unknown = null) =>
    sse(undefined, {
      id,
      object: 'chat.completion.chunk',
      created: Math.floor(Date.now() / 1000),
      model: body.model,
      choices,
      // With include_usage every chunk has `usage: null` but the last, which has only usage.
      ...(includeUsage ? { usage } : {}),
    });
  const choice = (delta: Record<string, unknown>, finishReason: string | null = null) => ({ index: 0, delta, logprobs: null, finish_reason: finishReason });
  const events = [
    chunk([choice({ role: 'assistant', content: '' })]),
    ...answerDeltas(counted).map((content) => chunk([choice({ content })])),
    chunk([choice({}, counted.truncated ? 'length' : 'stop')]),
  ];
  if (includeUsage) {
    events.push(
      chunk([], {
        prompt_tokens: counted.inputTokens,
        completion_tokens: counted.outputTokens,
        total_tokens: counted.inputTokens + counted.outputTokens,
        prompt_tokens_details: { cached_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: counted.reasoningTokens },
      }),
    );
  }
  events.push(sse(undefined, '[DONE]'));
  return events;
}

function sendError(res: ServerResponse, status: number, type: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type, param: null, code: null } }));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function handle(req: IncomingMessage, res: ServerResponse, eventDelayMs: number, nextId: () => string): Promise<void> {
  const raw = await readBody(req);
  const path = new URL(req.url ?? '/', 'http://simulator').pathname;
  if (req.method !== 'POST' || (path !== '/v1/responses' && path !== '/v1/chat/completions')) {
    return sendError(res, 404, 'invalid_request_error', `The simulator does not serve ${req.method} ${path}.`);
  }
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
  } catch {
    return sendError(res, 400, 'invalid_request_error', 'The request body is not valid JSON.');
  }
  if (body.stream !== true) return sendError(res, 400, 'invalid_request_error', 'The simulator only streams: set "stream": true.');
  const fault = req.headers[FAULT_HEADER] as Fault | undefined;
  if (fault === 'server_error') {
    return sendError(res, 500, 'server_error', 'The server had an error while processing your request. Sorry about that!');
  }

  const counted = count(body, raw);
  const events = path === '/v1/responses' ? responsesEvents(body, counted, `resp_${nextId()}`) : chatEvents(body, counted, `chatcmpl-${nextId()}`);
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  const cutAt = fault === 'reset' ? Math.floor(events.length / 2) : events.length;
  for (let i = 0; i < cutAt; i++) {
    // The client (through the gateway) left: stop generating, as a provider does.
    if (res.destroyed) return;
    res.write(events[i]);
    await sleep(eventDelayMs);
  }
  if (fault === 'reset') res.destroy();
  else res.end();
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const eventDelayMs = options.eventDelayMs ?? 2;
  let requests = 0;
  const nextId = () => (++requests).toString(16).padStart(12, '0');
  const server = http.createServer((req, res) => {
    handle(req, res, eventDelayMs, nextId).catch((error: unknown) => {
      // Typically a connection torn down while its body was read: answer if it still can be.
      if (!res.headersSent && !res.destroyed) sendError(res, 500, 'server_error', String(error));
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
