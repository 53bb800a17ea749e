/**
 * Usage extraction throughput: Tollgate's extractors against what a straightforward
 * implementation does (eventsource-parser 3 parsing every event, then JSON.parse of every
 * event's data), on the same bytes, in the same process, in interleaved rounds
 * (BENCHMARKING.md). Prints MB/s and the median speed-up with its min–max; always exits 0.
 *
 *   npx tsx bench/extraction.ts
 */
import { createParser } from 'eventsource-parser';
import { extractors, type ExtractorFactory, type UsageApi } from '../plugin/usage/index.js';

const ROUNDS = 7;
const WARM_UP_ROUNDS = 3;
const MB = 1e6;
const LIMITS = { maxEventBytes: 16 * 1024 * 1024 };

// ---------------------------------------------------------------- streams, built like the real ones

const WORDS = ['The', ' quick', ' route', ' to', ' Kyoto', ' is', ' the', ' Shinkansen', ',', ' about', ' 2h15', '.', ' 東京', '駅', ' から', ' 🚄', ' then', ' walk', ' —', ' 🍵', ' ok', '\n\n', ' "quoted"', ' and', ' so', ' on'];

function* textDeltas(): Generator<string> {
  for (let i = 0; ; i++) yield WORDS[(i * 7 + (i >> 3)) % WORDS.length];
}

function frame(name: string | undefined, data: unknown): string {
  return `${name === undefined ? '' : `event: ${name}\n`}data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}

/** An OpenAI Responses stream whose text deltas make up about `bytes`; the last four events repeat the whole text. */
function responsesStream(bytes: number): string[] {
  const id = 'resp_0a1b2c3d4e5f60718293a4b5c6d7e8f9';
  const itemId = 'msg_0a1b2c3d4e5f6071';
  let sequence = 0;
  const event = (type: string, fields: object) => frame(type, { type, sequence_number: sequence++, ...fields });
  const response = (status: string, output: unknown[], usage: unknown) => ({
    id,
    object: 'response',
    created_at: 1767225600,
    status,
    error: null,
    incomplete_details: null,
    instructions: 'You are a helpful travel assistant. '.repeat(20),
    model: 'gpt-5-2025-08-07',
    output,
    parallel_tool_calls: true,
    reasoning: { effort: 'medium', summary: null },
    store: true,
    temperature: 1,
    text: { format: { type: 'text' }, verbosity: 'medium' },
    tool_choice: 'auto',
    tools: [],
    top_p: 1,
    truncation: 'disabled',
    usage,
    metadata: {},
  });
  const events = [
    event('response.created', { response: response('in_progress', [], null) }),
    event('response.in_progress', { response: response('in_progress', [], null) }),
    event('response.output_item.added', { output_index: 0, item: { id: itemId, type: 'message', status: 'in_progress', content: [], role: 'assistant' } }),
    event('response.content_part.added', { item_id: itemId, output_index: 0, content_index: 0, part: { type: 'output_text', annotations: [], text: '' } }),
  ];
  let size = 0;
  const text: string[] = [];
  for (const delta of textDeltas()) {
    if (size >= bytes) break;
    const obfuscation = 'x9Qm2LpZ7w'.slice(0, 10 - delta.length % 10);
    const e = event('response.output_text.delta', { item_id: itemId, output_index: 0, content_index: 0, delta, logprobs: [], obfuscation });
    events.push(e);
    text.push(delta);
    size += e.length;
  }
  const part = { type: 'output_text', annotations: [], logprobs: [], text: text.join('') };
  const item = { id: itemId, type: 'message', status: 'completed', content: [part], role: 'assistant' };
  const usage = {
    input_tokens: 2500,
    input_tokens_details: { cached_tokens: 1920 },
    output_tokens: text.length,
    output_tokens_details: { reasoning_tokens: 640 },
    total_tokens: 2500 + text.length,
  };
  events.push(
    event('response.output_text.done', { item_id: itemId, output_index: 0, content_index: 0, text: part.text, logprobs: [] }),
    event('response.content_part.done', { item_id: itemId, output_index: 0, content_index: 0, part }),
    event('response.output_item.done', { output_index: 0, item }),
    event('response.completed', { response: response('completed', [item], usage) }),
  );
  return events;
}

/** An OpenAI Chat Completions stream with stream_options.include_usage. */
function chatStream(bytes: number): string[] {
  const chunk = (choices: unknown[], usage: unknown) =>
    frame(undefined, {
      id: 'chatcmpl-CbT8kQe5z1YpLwR2vN0xA7mJ3uHdF',
      object: 'chat.completion.chunk',
      created: 1767225600,
      model: 'gpt-4o-2024-08-06',
      service_tier: 'default',
      system_fingerprint: 'fp_07871e2ad8',
      choices,
      usage,
    });
  const events = [chunk([{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }], null)];
  let size = 0;
  let count = 0;
  for (const delta of textDeltas()) {
    if (size >= bytes) break;
    const e = chunk([{ index: 0, delta: { content: delta }, logprobs: null, finish_reason: null }], null);
    events.push(e);
    size += e.length;
    count++;
  }
  events.push(
    chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }], null),
    chunk([], { prompt_tokens: 1830, completion_tokens: count, total_tokens: 1830 + count, prompt_tokens_details: { cached_tokens: 1024 } }),
    frame(undefined, '[DONE]'),
  );
  return events;
}

/** An Anthropic Messages stream with prompt caching. */
function anthropicStream(bytes: number): string[] {
  const usage = { input_tokens: 1200, cache_creation_input_tokens: 100, cache_read_input_tokens: 300, output_tokens: 1 };
  const events = [
    frame('message_start', { type: 'message_start', message: { id: 'msg_01XFDUDYJgAACzvnptvVoYEL', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5-20250929', content: [], stop_reason: null, stop_sequence: null, usage } }),
    frame('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
  ];
  let size = 0;
  let count = 0;
  for (const text of textDeltas()) {
    if (size >= bytes) break;
    const e = frame('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } });
    events.push(e);
    size += e.length;
    if (++count % 500 === 0) events.push(frame('ping', { type: 'ping' }));
  }
  events.push(
    frame('content_block_stop', { type: 'content_block_stop', index: 0 }),
    frame('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { ...usage, output_tokens: count } }),
    frame('message_stop', { type: 'message_stop' }),
  );
  return events;
}

// ---------------------------------------------------------------- the two implementations

/** Tollgate: reads the usage, and nothing more. Returns the output token count as a check. */
function tollgate(factory: ExtractorFactory, chunks: readonly Buffer[]): number | undefined {
  const extractor = factory(true, LIMITS);
  for (const chunk of chunks) extractor.feed(chunk);
  extractor.end();
  return extractor.state.usage.outputTokens;
}

/** Where the baseline finds the output token count in a parsed event. */
const BASELINE_OUTPUT: Record<UsageApi, (data: unknown) => number | undefined> = {
  responses: (data) => (data as { response?: { usage?: { output_tokens?: number } } }).response?.usage?.output_tokens,
  chat_completions: (data) => (data as { usage?: { completion_tokens?: number } }).usage?.completion_tokens,
  anthropic_messages: (data) => (data as { usage?: { output_tokens?: number } }).usage?.output_tokens,
};

/** What a straightforward implementation does: decode everything, parse every event, JSON.parse every data. */
function baseline(api: UsageApi, chunks: readonly Buffer[]): number | undefined {
  let output: number | undefined;
  const decoder = new TextDecoder();
  const parser = createParser({
    onEvent: ({ data }) => {
      if (data === '[DONE]') return;
      output = BASELINE_OUTPUT[api](JSON.parse(data)) ?? output;
    },
  });
  for (const chunk of chunks) parser.feed(decoder.decode(chunk, { stream: true }));
  return output;
}

// ---------------------------------------------------------------- measuring

interface Case {
  name: string;
  api: UsageApi;
  chunks: Buffer[];
  /** Passes over the chunks per timed run, so that a run lasts long enough to time. */
  passes: number;
  target?: number;
}

function byChunkSize(events: string[], size: number): Buffer[] {
  const all = Buffer.from(events.join(''));
  const chunks: Buffer[] = [];
  for (let at = 0; at < all.length; at += size) chunks.push(all.subarray(at, at + size));
  return chunks;
}

function byEvent(events: string[]): Buffer[] {
  return events.map((event) => Buffer.from(event));
}

/** CPU seconds, not wall-clock: steadier on a shared machine where other processes take turns. */
function time(run: () => number | undefined, passes: number): { seconds: number; output: number | undefined } {
  let output: number | undefined;
  const start = process.cpuUsage();
  for (let i = 0; i < passes; i++) output = run();
  const { user, system } = process.cpuUsage(start);
  return { seconds: (user + system) / 1e6, output };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

function measure({ name, api, chunks, passes, target }: Case): void {
  const bytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0) * passes;
  const ours: number[] = [];
  const theirs: number[] = [];
  const ratios: number[] = [];
  // Unmeasured rounds first: for the JIT to compile both sides, and for the garbage of building
  // the stream to be collected.
  for (let round = 0; round < WARM_UP_ROUNDS; round++) {
    time(() => tollgate(extractors[api], chunks), passes);
    time(() => baseline(api, chunks), passes);
  }
  for (let round = 0; round < ROUNDS; round++) {
    const a = time(() => tollgate(extractors[api], chunks), passes);
    const b = time(() => baseline(api, chunks), passes);
    if (a.output === undefined || a.output !== b.output) {
      console.log(`${name}: WRONG, Tollgate read ${a.output} output tokens and the baseline ${b.output}`);
      return;
    }
    ours.push(bytes / MB / a.seconds);
    theirs.push(bytes / MB / b.seconds);
    ratios.push(b.seconds / a.seconds);
  }
  const verdict = target === undefined ? '' : median(ratios) >= target ? `  target >= ${target}x: met` : `  target >= ${target}x: MISSED`;
  console.log(
    `${name.padEnd(40)} ${(bytes / passes / MB).toFixed(1).padStart(5)} MB x${passes}` +
      `  tollgate ${median(ours).toFixed(0).padStart(5)} MB/s  baseline ${median(theirs).toFixed(0).padStart(4)} MB/s` +
      `  speed-up ${median(ratios).toFixed(1)}x (${Math.min(...ratios).toFixed(1)}–${Math.max(...ratios).toFixed(1)})${verdict}`,
  );
}

const KiB16 = 16 * 1024;
const started = process.hrtime.bigint();
console.log(
  `Usage extraction, Node ${process.version}: Tollgate vs eventsource-parser 3 + JSON.parse of every event; ` +
    `${ROUNDS} interleaved rounds; MB per CPU-second, medians; speed-up median (min–max)`,
);
const longResponse = responsesStream(46 * MB);
const cases: Case[] = [
  { name: 'responses, 16 KiB chunks', api: 'responses', chunks: byChunkSize(longResponse, KiB16), passes: 1, target: 8 },
  // The event that repeats the whole response, usage and all: read whole by JSON.parse, it stalls the event loop.
  { name: 'responses, its response.completed alone', api: 'responses', chunks: byChunkSize(longResponse.slice(-1), KiB16), passes: 10 },
  { name: 'responses, one event per chunk', api: 'responses', chunks: byEvent(responsesStream(0.9 * MB)), passes: 10, target: 6 },
  { name: 'chat completions, 16 KiB chunks', api: 'chat_completions', chunks: byChunkSize(chatStream(20 * MB), KiB16), passes: 1 },
  { name: 'chat completions, one event per chunk', api: 'chat_completions', chunks: byEvent(chatStream(1 * MB)), passes: 10 },
  { name: 'anthropic messages, 16 KiB chunks', api: 'anthropic_messages', chunks: byChunkSize(anthropicStream(20 * MB), KiB16), passes: 1 },
  { name: 'anthropic messages, one event per chunk', api: 'anthropic_messages', chunks: byEvent(anthropicStream(1 * MB)), passes: 10 },
];
for (const benchCase of cases) measure(benchCase);
console.log(`(${(Number(process.hrtime.bigint() - started) / 1e9).toFixed(1)} s in all)`);
