/**
 * The shapes shared by the per-API usage extractors (one file per API in this folder).
 *
 * A token count the provider did not report is `undefined`, never 0 (DESIGN.md).
 */

/** Token usage normalised to the OpenTelemetry GenAI conventions. */
export interface Usage {
  /** Total input tokens, cache reads and cache writes included (Anthropic's input_tokens excludes them). */
  inputTokens?: number;
  /** Total output tokens, reasoning included. */
  outputTokens?: number;
  /** Part of inputTokens read from the prompt cache. */
  cacheReadInputTokens?: number;
  /** Part of inputTokens written to the prompt cache. */
  cacheCreationInputTokens?: number;
  /** Part of outputTokens spent on reasoning. */
  reasoningOutputTokens?: number;
}

/** How the provider ended the response, as the response body itself says. */
export type Terminal = 'completed' | 'incomplete' | 'failed';

/**
 * What an extractor has learned so far; read at any time (usage known so far on a broken stream).
 * An id or model that a stream gives only in its opening event (Responses' `response.created`) is
 * there once end() has run.
 */
export interface ExtractionState {
  usage: Usage;
  /** Set once the body's terminal event (or the whole non-streaming body) has passed. */
  terminal?: Terminal;
  responseModel?: string;
  responseId?: string;
  /** Frames the extractor gave up on: oversized, or not valid JSON where JSON was due. */
  parseErrors: number;
}

/**
 * One extractor per request. It sees a copy of the upstream body's chunks (already decompressed),
 * in order, on the side of the byte path: it never throws, never mutates a chunk and keeps
 * bounded memory whatever it is fed.
 */
export interface UsageExtractor {
  feed(chunk: Uint8Array): void;
  /** The body ended (cleanly or not); a non-streaming JSON body is parsed here. */
  end(): void;
  readonly state: ExtractionState;
}

export interface ExtractorLimits {
  /** Largest SSE event (or non-streaming JSON body) the extractor will hold to parse, in bytes. */
  maxEventBytes: number;
}

/** Picks the streaming or JSON flavour from the response's content type. */
export type ExtractorFactory = (streaming: boolean, limits: ExtractorLimits) => UsageExtractor;
