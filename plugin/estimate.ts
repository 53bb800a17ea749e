/**
 * The reservation: an upper bound of what a request can cost, computed before it is forwarded.
 *
 * Input tokens are bounded by the request body's byte length (divided by `bytesPerInputToken`,
 * default 1): a byte-level BPE tokenizer never emits more tokens than the bytes it encodes, and
 * the JSON around the text only adds bytes. This needs no tokenizer on the hot path (tokenizing
 * a multi-MB agent request would cost tens of milliseconds) and stays an upper bound, except for
 * content the provider fetches by reference (image URLs, file ids), which over-run and are
 * recorded as such.
 *
 * Output tokens are the request's own limit, else the configured default, capped by the model's
 * output limit when the pricing table knows it (and by MAX_OUTPUT_TOKENS when it does not), times
 * the choices asked for (Chat Completions' `n`: each choice is written up to the limit).
 */
import { maxCostOf, type ModelPrice } from './pricing.js';
import type { Route } from './routes.js';

/**
 * More output than any model writes in one response (the largest limits are around a million
 * tokens). A client may send any integer as its limit; beyond this one the estimate could pass
 * what money can be here (2^53 micro-credits) instead of simply being more than any balance.
 */
const MAX_OUTPUT_TOKENS = 1_000_000_000;

export interface EstimateSettings {
  defaultMaxOutputTokens: number;
  bytesPerInputToken: number;
  safetyBuffer: number;
}

export interface Estimate {
  inputTokens: number;
  outputTokens: number;
  /** Micro-credits to reserve; at least 1, so that every request holds something. */
  amount: number;
}

export function estimateReservation(
  bodyBytes: number,
  request: Record<string, unknown>,
  route: Route,
  price: ModelPrice,
  settings: EstimateSettings,
): Estimate {
  const inputTokens = Math.ceil(bodyBytes / settings.bytesPerInputToken);
  const requested = route.maxOutputFields.map((field) => request[field]).find(isPositiveInteger);
  const modelLimit = price.maxOutputTokens;
  let outputTokens = Math.min(requested ?? settings.defaultMaxOutputTokens, MAX_OUTPUT_TOKENS);
  if (modelLimit !== undefined) outputTokens = Math.min(outputTokens, modelLimit);
  const choices = route.choicesField === undefined ? undefined : request[route.choicesField];
  if (isPositiveInteger(choices)) outputTokens = Math.min(outputTokens * choices, MAX_OUTPUT_TOKENS);
  const bound = maxCostOf({ inputTokens, outputTokens }, price);
  // One rounding, upwards, after the buffer: the reservation stays an upper bound.
  const amount = Math.max(1, Math.ceil(bound * settings.safetyBuffer));
  return { inputTokens, outputTokens, amount };
}

function isPositiveInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0;
}
