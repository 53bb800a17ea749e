/**
 * Usage of the OpenAI Chat Completions API (`POST /v1/chat/completions`).
 * https://platform.openai.com/docs/api-reference/chat-streaming
 *
 * Streaming frames are unnamed `chat.completion.chunk` objects, ending with `data: [DONE]`. Usage
 * comes in one extra chunk (`choices: []`) only when the request asked for
 * `stream_options.include_usage`; without it there is none anywhere. Almost every chunk is a
 * text delta: a byte check (`mayMatter`) picks the few that can matter, and only those are parsed.
 */
import { defineExtractor, get, parseJson, readCounts, readIdentity } from './common.js';
import type { Terminal } from './types.js';

/** `prompt_tokens` includes the cached ones, `completion_tokens` the reasoning ones: as GenAI counts them. */
const USAGE_PATHS = {
  inputTokens: ['prompt_tokens'],
  cacheReadInputTokens: ['prompt_tokens_details', 'cached_tokens'],
  outputTokens: ['completion_tokens'],
  reasoningOutputTokens: ['completion_tokens_details', 'reasoning_tokens'],
} as const;

/** Finish reasons that mean the model was cut short rather than done. */
const CUT_SHORT = new Set<unknown>(['length', 'content_filter']);

// The SDK ends the stream on data starting with [DONE] (openai-node, src/core/streaming.ts).
const DONE = Buffer.from('[DONE]');

export const chatCompletionsExtractor = defineExtractor((state) => {
  let cutShort = false;

  const ended = (): Terminal => (cutShort ? 'incomplete' : 'completed');

  function readChunk(chunk: unknown): void {
    readIdentity(chunk, state);
    const usage = get(chunk, 'usage');
    if (usage != null) state.usage = readCounts(usage, USAGE_PATHS, state);
    const choices = get(chunk, 'choices');
    if (Array.isArray(choices) && choices.some((choice) => CUT_SHORT.has(get(choice, 'finish_reason')))) {
      cutShort = true;
    }
    if (get(chunk, 'error') != null) state.terminal = 'failed';
  }

  return {
    onEvent(_type, data) {
      if (isAt(data, 0, DONE)) {
        state.terminal ??= ended();
        return;
      }
      // Chunks are read until one gives the response id (and model): normally the first.
      if (state.responseId !== undefined && !mayMatter(data)) return;
      readChunk(parseJson(data));
    },
    onBody(body) {
      readChunk(body);
      if (Array.isArray(get(body, 'choices'))) state.terminal ??= ended();
    },
  };
});

const QUOTE = 0x22;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const UNDERSCORE = 0x5f;
const N = 0x6e; // the first byte of `null`
const USAGE_KEY = Buffer.from('"usage"');
const ERROR_KEY = Buffer.from('"error"');
const FINISH_REASON_KEY = Buffer.from('"finish_reason"');
const FINISH_REASON_UNDERSCORE = FINISH_REASON_KEY.indexOf(UNDERSCORE);

/**
 * Whether a chunk may change what is extracted: it has a `usage` or `error` object, or a
 * `finish_reason` that is not null (at any depth: a false positive only costs a parse).
 *
 * Searching for the keys themselves costs more than parsing a small chunk would save
 * (Buffer#indexOf of a several-byte needle is ~0.1–0.3 µs a call), so it hops with one-byte
 * searches (memchr) over the few `{` and `_` of a chunk and looks at the bytes around each: the
 * key before a `{`, the key and value around a `_`. One JSON fact makes this sound: inside a
 * string, a quote is always escaped, so a bare `usage"` followed by a colon can only close the
 * key "usage". Whitespace around the colon is allowed; a key spelled with escapes
 * (`"\u0075sage"`) would be missed, and no serializer writes ASCII letters so.
 */
function mayMatter(json: Buffer): boolean {
  for (let at = json.indexOf(OPEN_BRACE, 1); at !== -1; at = json.indexOf(OPEN_BRACE, at + 1)) {
    const keyEnd = keyEndBefore(json, at);
    if (keyEnd !== -1 && (isAt(json, keyEnd - USAGE_KEY.length, USAGE_KEY) || isAt(json, keyEnd - ERROR_KEY.length, ERROR_KEY))) {
      return true;
    }
  }
  for (let at = json.indexOf(UNDERSCORE); at !== -1; at = json.indexOf(UNDERSCORE, at + 1)) {
    const keyStart = at - FINISH_REASON_UNDERSCORE;
    if (isAt(json, keyStart, FINISH_REASON_KEY)) {
      const value = valueAfter(json, keyStart + FINISH_REASON_KEY.length);
      if (value !== -1 && json[value] !== N) return true;
    }
  }
  return false;
}

/** Whether `bytes` stand in `json` at `at`. */
function isAt(json: Buffer, at: number, bytes: Buffer): boolean {
  if (at < 0 || at + bytes.length > json.length) return false;
  for (let i = 0; i < bytes.length; i++) if (json[at + i] !== bytes[i]) return false;
  return true;
}

/** Where the value starts after a key that ends (closing quote included) just before `at`; -1 when no colon follows. */
function valueAfter(json: Buffer, at: number): number {
  let i = skipWhitespace(json, at, 1);
  if (json[i] !== COLON) return -1;
  i = skipWhitespace(json, i + 1, 1);
  return i < json.length ? i : -1;
}

/** Where the key (closing quote included) ends whose value starts at `valueAt`; -1 when it is no object value. */
function keyEndBefore(json: Buffer, valueAt: number): number {
  let i = skipWhitespace(json, valueAt - 1, -1);
  if (json[i] !== COLON) return -1;
  i = skipWhitespace(json, i - 1, -1);
  return json[i] === QUOTE ? i + 1 : -1;
}

/** The first index from `i` on, going by `step`, that is not JSON whitespace. */
function skipWhitespace(json: Buffer, i: number, step: 1 | -1): number {
  while (json[i] === 0x20 || json[i] === 0x0a || json[i] === 0x0d || json[i] === 0x09) i += step;
  return i;
}
