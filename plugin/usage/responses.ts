/**
 * Usage of the OpenAI Responses API (`POST /v1/responses`).
 * https://platform.openai.com/docs/api-reference/responses-streaming
 *
 * Streaming: usage comes only in the one terminal event, inside the whole response object it
 * repeats (all output text included, often MBs). Every other event is skipped unread, the text
 * deltas and the `…done` events that repeat the text among them. `response.created` is kept
 * unparsed, and read only if the stream ends without the terminal event's id or model: it too is
 * a whole response object, instructions and tools included (often tens of KB), that the terminal
 * event repeats.
 */
import { defineExtractor, get, readCounts, readIdentity } from './common.js';
import { pickJson, shapeOfPaths } from './json-pick.js';
import type { ExtractionState, Terminal } from './types.js';

const TERMINAL_EVENTS = new Map<string, Terminal>([
  ['response.completed', 'completed'],
  ['response.incomplete', 'incomplete'],
  ['response.failed', 'failed'],
]);
const CREATED = 'response.created';
const ERROR = 'error';
// The SSE type of an event without an `event:` line.
const UNNAMED = 'message';
// The event name equals the data's `type`; an unnamed event is read to find its type.
const EVENTS = [CREATED, ERROR, ...TERMINAL_EVENTS.keys(), UNNAMED];

/** A response object's `status` once it has ended (the others: queued, in_progress, cancelled). */
const ENDED = new Set<unknown>(['completed', 'incomplete', 'failed']);

/** `input_tokens` includes the cached ones, `output_tokens` the reasoning ones: as GenAI counts them. */
const USAGE_PATHS = {
  inputTokens: ['input_tokens'],
  cacheReadInputTokens: ['input_tokens_details', 'cached_tokens'],
  cacheCreationInputTokens: ['input_tokens_details', 'cache_write_tokens'],
  outputTokens: ['output_tokens'],
  reasoningOutputTokens: ['output_tokens_details', 'reasoning_tokens'],
} as const;

/**
 * What is read of an event: its type, and of its response object only what readResponse reads.
 * The rest (every output item, all the text) is skipped unbuilt (json-pick.ts).
 */
const EVENT_SHAPE = shapeOfPaths([['type'], ['response', 'id'], ['response', 'model'], ...Object.values(USAGE_PATHS).map((path) => ['response', 'usage', ...path])]);
const readEvent = (data: Buffer) => pickJson(data, EVENT_SHAPE);

export const responsesExtractor = defineExtractor((state) => {
  const nothingRead = state.usage;
  /** The data of the latest `response.created`, copied: an event's data is only valid during the call. */
  let created: Buffer | undefined;
  return {
    events: EVENTS,
    onEvent(name, data) {
      if (name === CREATED) {
        created = Buffer.from(data);
        return;
      }
      const event = readEvent(data);
      const type = name === UNNAMED ? get(event, 'type') : name;
      if (typeof type !== 'string') return;
      const terminal = TERMINAL_EVENTS.get(type);
      if (terminal !== undefined) {
        readResponse(get(event, 'response'), state);
        state.terminal = terminal;
      } else if (type === CREATED) {
        // An unnamed one: parsed already, to find its type.
        readResponse(get(event, 'response'), state);
      } else if (type === ERROR) {
        // Both shapes seen in the wild, flat {type, code, message} and nested {type, error: {…}}.
        state.terminal = 'failed';
      }
    },
    onBody(body) {
      readResponse(body, state);
      const status = get(body, 'status');
      if (ENDED.has(status)) state.terminal = status as Terminal;
      // An HTTP error answers {"error": {…}} instead of a response object.
      else if (get(body, 'error') != null) state.terminal = 'failed';
    },
    onStreamEnd() {
      const { responseId, responseModel, usage } = state;
      if (created === undefined || (responseId !== undefined && responseModel !== undefined && usage !== nothingRead)) return;
      const data = created;
      created = undefined;
      // response.created opens the stream: whatever a later event said wins, it only fills the rest.
      readResponse(get(readEvent(data), 'response'), state);
      state.responseId = responseId ?? state.responseId;
      state.responseModel = responseModel ?? state.responseModel;
      if (usage !== nothingRead) state.usage = usage;
    },
  };
});

function readResponse(response: unknown, state: ExtractionState): void {
  readIdentity(response, state);
  // `response.created` and the failed event carry `usage: null`: nothing reported yet.
  const usage = get(response, 'usage');
  if (usage != null) state.usage = readCounts(usage, USAGE_PATHS, state);
}
