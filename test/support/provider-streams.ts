/**
 * Response bodies in each provider's wire format, built from the pieces a test cares about
 * (text, usage, how it ends), so that tests know the exact numbers the gateway must extract.
 * Shapes follow the official SDKs' stream types (see ../../../shared/PROVIDER-STREAMS.md).
 */

export interface TokenCounts {
  input: number;
  output: number;
  cached?: number;
  cacheCreation?: number;
  reasoning?: number;
}

const sse = (event: string | undefined, data: unknown) =>
  `${event ? `event: ${event}\n` : ''}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;

/** Text deltas of a few characters each, multi-byte characters included. */
export function pieces(text: string, size = 7): string[] {
  const chars = [...text];
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

export type ResponsesTerminal = 'completed' | 'incomplete' | 'failed';

export function responsesStream(text: string, usage: TokenCounts, terminal: ResponsesTerminal = 'completed'): Buffer {
  const id = 'resp_0123456789';
  const model = 'gpt-4.1-2025-04-14';
  let seq = 0;
  const frame = (type: string, body: Record<string, unknown>) => sse(type, { type, sequence_number: seq++, ...body });
  const base = { id, object: 'response', created_at: 1764000000, model, output: [] as unknown[], usage: null };
  let out = frame('response.created', { response: { ...base, status: 'in_progress' } });
  out += frame('response.in_progress', { response: { ...base, status: 'in_progress' } });
  const item = { id: 'msg_1', type: 'message', role: 'assistant', status: 'in_progress', content: [] };
  out += frame('response.output_item.added', { output_index: 0, item });
  out += frame('response.content_part.added', {
    item_id: 'msg_1',
    output_index: 0,
    content_index: 0,
    part: { type: 'output_text', text: '', annotations: [] },
  });
  for (const delta of pieces(text)) {
    out += frame('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta, logprobs: [] });
  }
  out += frame('response.output_text.done', { item_id: 'msg_1', output_index: 0, content_index: 0, text, logprobs: [] });
  const message = { ...item, status: 'completed', content: [{ type: 'output_text', text, annotations: [] }] };
  out += frame('response.output_item.done', { output_index: 0, item: message });
  out += frame(`response.${terminal}`, { response: responsesObject(text, usage, terminal) });
  return Buffer.from(out);
}

export function responsesObject(text: string, usage: TokenCounts, status: ResponsesTerminal = 'completed') {
  return {
    id: 'resp_0123456789',
    object: 'response',
    created_at: 1764000000,
    status,
    model: 'gpt-4.1-2025-04-14',
    output: [
      {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        status: 'completed',
        content: [{ type: 'output_text', text, annotations: [] }],
      },
    ],
    incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    error: status === 'failed' ? { code: 'server_error', message: 'The model failed.' } : null,
    usage: {
      input_tokens: usage.input,
      input_tokens_details: { cached_tokens: usage.cached ?? 0 },
      output_tokens: usage.output,
      output_tokens_details: { reasoning_tokens: usage.reasoning ?? 0 },
      total_tokens: usage.input + usage.output,
    },
  };
}

/** Chat Completions; with `usage` the stream ends with the include_usage chunk. */
export function chatStream(text: string, usage: TokenCounts | undefined, finishReason = 'stop'): Buffer {
  const head = { id: 'chatcmpl-42', object: 'chat.completion.chunk', created: 1764000000, model: 'gpt-4o-mini-2024-07-18' };
  const withUsage = usage ? { usage: null } : {};
  let out = sse(undefined, {
    ...head,
    choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
    ...withUsage,
  });
  for (const content of pieces(text)) {
    out += sse(undefined, { ...head, choices: [{ index: 0, delta: { content }, finish_reason: null }], ...withUsage });
  }
  out += sse(undefined, { ...head, choices: [{ index: 0, delta: {}, finish_reason: finishReason }], ...withUsage });
  if (usage) {
    out += sse(undefined, {
      ...head,
      choices: [],
      usage: {
        prompt_tokens: usage.input,
        completion_tokens: usage.output,
        total_tokens: usage.input + usage.output,
        prompt_tokens_details: { cached_tokens: usage.cached ?? 0 },
        completion_tokens_details: { reasoning_tokens: usage.reasoning ?? 0 },
      },
    });
  }
  out += sse(undefined, '[DONE]');
  return Buffer.from(out);
}

/**
 * Anthropic Messages. `usage.input` here is the GenAI total; the wire format's input_tokens
 * excludes cache reads and writes, so they are subtracted.
 */
export function anthropicStream(text: string, usage: TokenCounts, stopReason = 'end_turn'): Buffer {
  const cacheRead = usage.cached ?? 0;
  const cacheCreation = usage.cacheCreation ?? 0;
  let out = sse('message_start', {
    type: 'message_start',
    message: {
      id: 'msg_01XYZ',
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-6',
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: {
        input_tokens: usage.input - cacheRead - cacheCreation,
        cache_creation_input_tokens: cacheCreation,
        cache_read_input_tokens: cacheRead,
        output_tokens: 1,
      },
    },
  });
  out += sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
  out += sse('ping', { type: 'ping' });
  for (const delta of pieces(text)) {
    out += sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: delta } });
  }
  out += sse('content_block_stop', { type: 'content_block_stop', index: 0 });
  out += sse('message_delta', {
    type: 'message_delta',
    delta: { stop_reason: stopReason, stop_sequence: null },
    usage: { output_tokens: usage.output },
  });
  out += sse('message_stop', { type: 'message_stop' });
  return Buffer.from(out);
}

export const SSE_HEADERS = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' };
export const JSON_HEADERS = { 'content-type': 'application/json' };
