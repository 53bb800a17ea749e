/**
 * What the per-API usage extractors share: the boundary that keeps them from throwing, the SSE
 * and whole-JSON-body plumbing, and a defensive reading of token counts.
 */
import { checkMaxEventBytes, createSseScanner } from '../sse.js';
import type { ExtractionState, ExtractorFactory, ExtractorLimits, UsageExtractor } from './types.js';

/** What one API contributes; created per request, over that request's state. */
export interface ApiReader {
  /** The SSE event types that can carry anything to read ("message": unnamed); omitted: all. */
  events?: readonly string[];
  /** A wanted event's raw data, valid only during the call. Throwing counts a parse error. */
  onEvent(type: string, data: Buffer): void;
  /** The parsed body of a non-streaming response. Throwing counts a parse error. */
  onBody(body: unknown): void;
  /** The stream ended, after its last event. Throwing counts a parse error. */
  onStreamEnd?(): void;
}

export function defineExtractor(createReader: (state: ExtractionState) => ApiReader): ExtractorFactory {
  return (streaming, limits) => {
    checkMaxEventBytes(limits.maxEventBytes);
    const state: ExtractionState = { usage: {}, parseErrors: 0 };
    const reader = createReader(state);
    return streaming ? streamExtractor(reader, state, limits) : bodyExtractor(reader, state, limits);
  };
}

function streamExtractor(reader: ApiReader, state: ExtractionState, limits: ExtractorLimits): UsageExtractor {
  const scanner = createSseScanner({
    events: reader.events,
    maxEventBytes: limits.maxEventBytes,
    onEvent(type, data) {
      // Caught per event, so that a bad event costs only itself and the scan goes on.
      try {
        reader.onEvent(type, data);
      } catch {
        state.parseErrors++;
      }
    },
    onError() {
      state.parseErrors++;
    },
  });
  return {
    state,
    feed(chunk) {
      // Metering observes the byte path and must never break it (DESIGN.md).
      try {
        scanner.feed(chunk);
      } catch {
        state.parseErrors++;
      }
    },
    end() {
      // An unterminated last event is discarded, as SSE clients do.
      scanner.reset();
      try {
        reader.onStreamEnd?.();
      } catch {
        state.parseErrors++;
      }
    },
  };
}

/** Clients decode JSON bodies as UTF-8 and skip a BOM; Buffer#toString would keep the BOM. */
const utf8 = new TextDecoder();

function bodyExtractor(reader: ApiReader, state: ExtractionState, { maxEventBytes }: ExtractorLimits): UsageExtractor {
  // Copies of the body's chunks; undefined once the body is over the limit or was read.
  let chunks: Buffer[] | undefined = [];
  let bytes = 0;
  return {
    state,
    feed(chunk) {
      if (chunks === undefined) return;
      bytes += chunk.length;
      if (bytes > maxEventBytes) {
        chunks = undefined;
        state.parseErrors++;
        return;
      }
      chunks.push(Buffer.from(chunk));
    },
    end() {
      if (chunks === undefined) return;
      const body = Buffer.concat(chunks, bytes);
      chunks = undefined;
      try {
        reader.onBody(JSON.parse(utf8.decode(body)));
      } catch {
        state.parseErrors++;
      }
    },
  };
}

/** Parses an event's data; a SyntaxError is counted by the caller as a parse error. */
export function parseJson(data: Buffer): unknown {
  return JSON.parse(data.toString('utf8'));
}

/** The value at `path` in parsed JSON, or undefined where the path does not exist. */
export function get(value: unknown, ...path: string[]): unknown {
  for (const key of path) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[key];
  }
  return value;
}

/**
 * Takes the response id and model from an object that carries them; the latest wins. An empty
 * string is no id (Azure OpenAI's first chat chunk, for prompt filter results, has id "").
 */
export function readIdentity(source: unknown, state: ExtractionState): void {
  const id = get(source, 'id');
  if (typeof id === 'string' && id !== '') state.responseId = id;
  const model = get(source, 'model');
  if (typeof model === 'string' && model !== '') state.responseModel = model;
}

/**
 * Far beyond any context window: a count above it is garbage, not usage (and could overflow
 * the ledger's money arithmetic downstream).
 */
const MAX_TOKENS = 1e12;

/**
 * Reads token counts at the given paths. A count that is absent or null was not reported and
 * stays absent; one that is not a non-negative integer up to MAX_TOKENS is not believed: it
 * stays absent too and counts as a parse error.
 */
export function readCounts<K extends string>(
  source: unknown,
  paths: Readonly<Record<K, readonly string[]>>,
  state: ExtractionState,
): Partial<Record<K, number>> {
  const counts: Partial<Record<K, number>> = {};
  for (const key in paths) {
    const value = get(source, ...paths[key]);
    if (value === undefined || value === null) continue;
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_TOKENS) {
      counts[key] = value;
    } else {
      state.parseErrors++;
    }
  }
  return counts;
}
