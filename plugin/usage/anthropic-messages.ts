/**
 * Usage of the Anthropic Messages API (`POST /v1/messages`).
 * https://docs.anthropic.com/en/docs/build-with-claude/streaming
 *
 * Every frame is named. Usage starts in `message_start` and is brought up to date by
 * `message_delta`, whose counters are cumulative (each replaces the one before, never adds to
 * it). Content blocks and pings, nearly all of the stream, are skipped unread.
 */
import { defineExtractor, get, parseJson, readCounts, readIdentity } from './common.js';
import type { Usage } from './types.js';

/** Anthropic's counters: its `input_tokens` EXCLUDES the cache reads and writes. */
const COUNTER_PATHS = {
  uncachedInput: ['input_tokens'],
  cacheRead: ['cache_read_input_tokens'],
  cacheCreation: ['cache_creation_input_tokens'],
  output: ['output_tokens'],
} as const;
type Counters = Partial<Record<keyof typeof COUNTER_PATHS, number>>;

/** Stop reasons that mean the model was cut short rather than done. */
const CUT_SHORT = new Set<unknown>(['max_tokens', 'model_context_window_exceeded']);

// Unnamed frames ("message") are not among them: the SDK drops them too.
const EVENTS = ['message_start', 'message_delta', 'message_stop', 'error'];

export const anthropicMessagesExtractor = defineExtractor((state) => {
  let counters: Counters = {};
  let stopReason: unknown;

  function readUsage(usage: unknown): void {
    counters = { ...counters, ...readCounts(usage, COUNTER_PATHS, state) };
    state.usage = normalise(counters);
  }

  /** `streamStart`: the message of `message_start`, whose output_tokens is a placeholder (1). */
  function readMessage(message: unknown, streamStart: boolean): void {
    readIdentity(message, state);
    const usage = get(message, 'usage');
    // The output count comes with message_delta; until then there is none, and a stream that
    // fails or breaks before it settles at the reservation rather than at one output token.
    readUsage(streamStart && typeof usage === 'object' && usage !== null ? { ...usage, output_tokens: undefined } : usage);
    stopReason = get(message, 'stop_reason') ?? stopReason;
  }

  function stop(): void {
    state.terminal = CUT_SHORT.has(stopReason) ? 'incomplete' : 'completed';
  }

  return {
    events: EVENTS,
    onEvent(name, data) {
      if (name === 'message_stop') {
        stop();
        return;
      }
      if (name === 'error') {
        state.terminal = 'failed';
        return;
      }
      const event = parseJson(data);
      if (name === 'message_start') {
        readMessage(get(event, 'message'), true);
      } else if (name === 'message_delta') {
        readUsage(get(event, 'usage'));
        stopReason = get(event, 'delta', 'stop_reason') ?? stopReason;
      }
    },
    onBody(body) {
      const type = get(body, 'type');
      if (type === 'message') {
        readMessage(body, false);
        stop();
      } else if (type === 'error') {
        state.terminal = 'failed';
      }
    },
  };
});

/** To the GenAI convention, where input counts the cache reads and writes (DESIGN.md). */
function normalise({ uncachedInput, cacheRead, cacheCreation, output }: Counters): Usage {
  const usage: Usage = {};
  // 1200 uncached + 300 cache read + 100 cache creation = 1600 input; a cache counter that is
  // absent (a model or API version without prompt caching) adds nothing.
  if (uncachedInput !== undefined) usage.inputTokens = uncachedInput + (cacheRead ?? 0) + (cacheCreation ?? 0);
  if (cacheRead !== undefined) usage.cacheReadInputTokens = cacheRead;
  if (cacheCreation !== undefined) usage.cacheCreationInputTokens = cacheCreation;
  if (output !== undefined) usage.outputTokens = output;
  return usage;
}
