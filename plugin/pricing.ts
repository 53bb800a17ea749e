/**
 * Prices per model, shared by the gateway (reservation estimates) and settlement (real cost).
 *
 * A pricing file comes in one of two formats, told apart by its shape:
 *
 * - Tollgate's own: `{ "models": { "<model>": { "input": 2.5, "cached_input": 1.25,
 *   "cache_write": 3.125, "output": 10, "reasoning"?: …, "max_output_tokens"?: 16384 } },
 *   "default"?: { …same fields… } }`, prices in credits per 1,000,000 tokens. A price is taken as
 *   the decimal it is written as and must have at most 6 decimal places (one micro-credit per 1M
 *   tokens); anything finer is refused rather than rounded.
 * - LiteLLM's `model_prices_and_context_window.json`
 *   (https://github.com/BerriAI/litellm/blob/main/model_prices_and_context_window.json), prices
 *   in USD per token, with 1 credit = 1 USD. Each float is converted once: its shortest decimal
 *   form (what `String(n)` prints, i.e. what the file said) is scaled by 10^12 and rounded UP to a
 *   whole micro-credit per 1M tokens (a pico-credit per token), so a price never shrinks and a
 *   sub-pico price never becomes free. Only entries priced per token (both
 *   `input_cost_per_token` and `output_cost_per_token`) are kept; image, audio and per-query
 *   entries are skipped. An output limit of 0 (LiteLLM's "not known") is no limit. Tiered
 *   fields (`*_above_200k_tokens`), batch, flex and priority prices are not read: supply your
 *   own table if you sell those.
 *
 * Inside, every price is an INTEGER number of micro-credits per 1,000,000 tokens (equivalently
 * pico-credits per token), so that costs are computed exactly (see `costOf`).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Usage } from './usage/types.js';

/** Prices of one model, each in integer micro-credits per 1,000,000 tokens. */
export interface ModelPrice {
  /** Non-cached input tokens. */
  readonly input: number;
  /** Input tokens read from the prompt cache (the input price when the table gives none). */
  readonly cachedInput: number;
  /** Input tokens written to the prompt cache (the input price when the table gives none). */
  readonly cacheWrite: number;
  /** Output tokens, reasoning included unless `reasoning` differs. */
  readonly output: number;
  /** Reasoning output tokens (the output price when the table gives none). */
  readonly reasoning: number;
  /** The model's output limit in tokens, when known; caps the reservation estimate. */
  readonly maxOutputTokens?: number;
}

export interface PricingTable {
  /** Content hash of the canonical table (16 hex digits); goes on every span as tollgate.pricing.version. */
  readonly version: string;
  /** Where the table came from (a path, or "built-in"), for messages. */
  readonly source: string;
  readonly models: ReadonlyMap<string, ModelPrice>;
  /** Price of models the table does not name, if configured (own format only). */
  readonly defaultPrice?: ModelPrice;
  /**
   * The price of `model`: the exact key, then the provider-prefixed key `<provider>/<model>`
   * (LiteLLM's spelling, e.g. `anthropic/claude-…`) when the provider is given, then the default.
   * Undefined: the model has no price (the gateway answers 400).
   */
  price(model: string, provider?: string): ModelPrice | undefined;
}

/** A pricing file or object that cannot be used; the message names the model, field and value. */
export class PricingError extends Error {
  override name = 'PricingError';
}

/** Token counts for the reservation estimate: totals, before any is known to be cached or reasoning. */
export interface TokenBound {
  inputTokens: number;
  outputTokens: number;
}

const MILLION = 1_000_000n;

/**
 * THE rounding rule. The cost of a request, in micro-credits:
 *
 *   cost = ceil( ( uncachedInput × input + cacheRead × cachedInput + cacheCreation × cacheWrite
 *                + (output − reasoning) × output + reasoning × reasoning ) / 1,000,000 )
 *
 * where each price is integer micro-credits per 1M tokens and
 * uncachedInput = inputTokens − cacheReadInputTokens − cacheCreationInputTokens. The sum is exact
 * (BigInt), and the one rounding, upwards, happens once per request: a request never costs less
 * than its exact price, and never more than one micro-credit above it.
 *
 * A count the provider did not report (undefined) contributes nothing. When the parts exceed
 * their total (cache reads + writes > input, or reasoning > output: a provider inconsistency),
 * each reported part is still charged at its own price and the remainder counts as 0, so every
 * reported token is charged once.
 *
 * @throws RangeError for a count that is not a non-negative safe integer, or a cost beyond
 *   Number.MAX_SAFE_INTEGER micro-credits.
 */
export function costOf(usage: Usage, price: ModelPrice): number {
  const input = tokens(usage.inputTokens, 'inputTokens');
  const cacheRead = tokens(usage.cacheReadInputTokens, 'cacheReadInputTokens');
  const cacheCreation = tokens(usage.cacheCreationInputTokens, 'cacheCreationInputTokens');
  const output = tokens(usage.outputTokens, 'outputTokens');
  const reasoning = tokens(usage.reasoningOutputTokens, 'reasoningOutputTokens');
  const uncachedInput = max0(input - cacheRead - cacheCreation);
  return ceilMillionths(
    uncachedInput * BigInt(price.input) +
      cacheRead * BigInt(price.cachedInput) +
      cacheCreation * BigInt(price.cacheWrite) +
      max0(output - reasoning) * BigInt(price.output) +
      reasoning * BigInt(price.reasoning),
  );
}

/**
 * An upper bound of `costOf` for any usage with these totals (whose parts do not exceed them):
 * every input token at the dearest input price (input, cached input or cache write — a cache
 * write usually costs more than plain input) and every output token at the dearer of the output
 * and reasoning prices, rounded with the same rule. Each token of `costOf` is priced at most at
 * these, the sum is monotonic and so is the ceiling.
 */
export function maxCostOf(bound: TokenBound, price: ModelPrice): number {
  const input = tokens(bound.inputTokens, 'inputTokens');
  const output = tokens(bound.outputTokens, 'outputTokens');
  const inputPrice = Math.max(price.input, price.cachedInput, price.cacheWrite);
  const outputPrice = Math.max(price.output, price.reasoning);
  return ceilMillionths(input * BigInt(inputPrice) + output * BigInt(outputPrice));
}

function tokens(count: number | undefined, field: string): bigint {
  if (count === undefined) return 0n;
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new RangeError(`${field} must be a non-negative integer, got ${String(count)}`);
  }
  return BigInt(count);
}

function max0(value: bigint): bigint {
  return value > 0n ? value : 0n;
}

function ceilMillionths(picoCredits: bigint): number {
  const micro = (picoCredits + MILLION - 1n) / MILLION;
  if (micro > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new RangeError(`cost of ${micro} micro-credits exceeds the safe integer range`);
  }
  return Number(micro);
}

/** Reads and parses a pricing file (either format). */
export async function loadPricing(path: string): Promise<PricingTable> {
  const text = await readFile(path, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new PricingError(`${path}: not valid JSON (${(error as Error).message})`);
  }
  return parsePricing(json, path);
}

/** Parses a pricing object in either format; `source` names it in error messages. */
export function parsePricing(json: unknown, source: string): PricingTable {
  if (!isObject(json)) throw new PricingError(`${source}: a pricing file must be a JSON object`);
  if (isObject(json.models)) return parseOwnFormat(json, source);
  if (Object.values(json).some((entry) => isObject(entry) && 'input_cost_per_token' in entry)) {
    return parseLiteLLM(json, source);
  }
  throw new PricingError(
    `${source}: not a pricing file: expected Tollgate's {"models": {…}} or LiteLLM's model_prices_and_context_window.json`,
  );
}

// --- Tollgate's own format ---------------------------------------------------------------

const OWN_FIELDS = ['input', 'cached_input', 'cache_write', 'output', 'reasoning', 'max_output_tokens'] as const;
/** Credits per 1M tokens → micro-credits per 1M tokens. */
const OWN_SCALE = 6;

function parseOwnFormat(json: Record<string, unknown>, source: string): PricingTable {
  for (const key of Object.keys(json)) {
    if (key !== 'models' && key !== 'default') {
      throw new PricingError(`${source}: unknown top-level field "${key}" (expected "models" and "default")`);
    }
  }
  const models = new Map<string, ModelPrice>();
  for (const [model, entry] of Object.entries(json.models as Record<string, unknown>)) {
    models.set(model, parseOwnEntry(entry, model, source));
  }
  const defaultPrice = json.default === undefined ? undefined : parseOwnEntry(json.default, 'default', source);
  return new Table(source, models, defaultPrice);
}

function parseOwnEntry(entry: unknown, model: string, source: string): ModelPrice {
  const where = `${source}: model "${model}"`;
  if (!isObject(entry)) throw new PricingError(`${where} must be an object, got ${describe(entry)}`);
  for (const field of Object.keys(entry)) {
    if (!(OWN_FIELDS as readonly string[]).includes(field)) {
      throw new PricingError(`${where} has unknown field "${field}" (expected one of ${OWN_FIELDS.join(', ')})`);
    }
  }
  const read = (field: string) => readPrice(entry, field, OWN_SCALE, 'exact', where);
  return resolvePrice(where, {
    input: read('input'),
    cachedInput: read('cached_input'),
    cacheWrite: read('cache_write'),
    output: read('output'),
    reasoning: read('reasoning'),
    maxOutputTokens: readTokenLimit(entry.max_output_tokens, `${where} field "max_output_tokens"`),
  });
}

// --- LiteLLM's format ----------------------------------------------------------------------

/** USD per token → micro-credits per 1M tokens: 10^6 micro × 10^6 tokens. */
const LITELLM_SCALE = 12;

function parseLiteLLM(json: Record<string, unknown>, source: string): PricingTable {
  const models = new Map<string, ModelPrice>();
  for (const [model, entry] of Object.entries(json)) {
    // sample_spec documents the fields; it is not a model.
    if (model === 'sample_spec' || !isObject(entry)) continue;
    if (entry.input_cost_per_token == null || entry.output_cost_per_token == null) continue;
    const where = `${source}: model "${model}"`;
    const read = (field: string) => readPrice(entry, field, LITELLM_SCALE, 'ceil', where);
    // max_tokens is LiteLLM's legacy name for the output limit; LiteLLM writes 0 for a limit it
    // does not know (embedding entries), which is no limit to cap the estimate with.
    const limitField = ['max_output_tokens', 'max_tokens'].find((field) => entry[field] != null && entry[field] !== 0);
    models.set(
      model,
      resolvePrice(where, {
        input: read('input_cost_per_token'),
        cachedInput: read('cache_read_input_token_cost'),
        cacheWrite: read('cache_creation_input_token_cost'),
        output: read('output_cost_per_token'),
        reasoning: read('output_cost_per_reasoning_token'),
        maxOutputTokens: limitField === undefined ? undefined : readTokenLimit(entry[limitField], `${where} field "${limitField}"`),
      }),
    );
  }
  if (models.size === 0) throw new PricingError(`${source}: no model priced per token`);
  return new Table(source, models, undefined);
}

// --- Shared parsing ------------------------------------------------------------------------

type PartialPrice = { [K in keyof ModelPrice]: ModelPrice[K] | undefined };

/** Applies the fallbacks: cached input and cache write to input, reasoning to output. */
function resolvePrice(where: string, p: PartialPrice): ModelPrice {
  if (p.input === undefined) throw new PricingError(`${where} has no input price`);
  if (p.output === undefined) throw new PricingError(`${where} has no output price`);
  const price: ModelPrice = {
    input: p.input,
    cachedInput: p.cachedInput ?? p.input,
    cacheWrite: p.cacheWrite ?? p.input,
    output: p.output,
    reasoning: p.reasoning ?? p.output,
  };
  return p.maxOutputTokens === undefined ? price : { ...price, maxOutputTokens: p.maxOutputTokens };
}

/** A price field; absent or null means "not priced" (the fallbacks apply). */
function readPrice(
  entry: Record<string, unknown>,
  field: string,
  scale: number,
  rounding: 'exact' | 'ceil',
  where: string,
): number | undefined {
  const value = entry[field];
  return value == null ? undefined : toScaledInteger(value, scale, rounding, `${where} field "${field}"`);
}

function readTokenLimit(value: unknown, where: string): number | undefined {
  if (value == null) return undefined;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new PricingError(`${where} must be a positive integer, got ${describe(value)}`);
  }
  return value;
}

/**
 * `value × 10^scale` as an integer, computed on the decimal the number is written as (the
 * shortest round-trip form, so 0.0000025 is 25·10^-7, not the binary float's 2.4999…e-6).
 * 'exact' refuses digits finer than the scale; 'ceil' rounds them up.
 */
function toScaledInteger(value: unknown, scale: number, rounding: 'exact' | 'ceil', where: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new PricingError(`${where} must be a non-negative number, got ${describe(value)}`);
  }
  // Non-negative finite numbers print as digits[.digits][e±exp].
  const [, whole, fraction = '', exponent = '0'] = /^(\d+)(?:\.(\d+))?(?:e([+-]\d+))?$/.exec(String(value))!;
  const shift = Number(exponent) - fraction.length + scale;
  const digits = BigInt(whole + fraction);
  let scaled: bigint;
  if (shift >= 0) {
    scaled = digits * 10n ** BigInt(shift);
  } else {
    const divisor = 10n ** BigInt(-shift);
    scaled = digits / divisor;
    if (digits % divisor !== 0n) {
      if (rounding === 'exact') {
        throw new PricingError(`${where} has more than ${scale} decimal places: ${value}`);
      }
      scaled += 1n;
    }
  }
  if (scaled > BigInt(Number.MAX_SAFE_INTEGER)) throw new PricingError(`${where} is too large: ${value}`);
  return Number(scaled);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  return typeof value === 'number' ? String(value) : JSON.stringify(value) ?? String(value);
}

// --- The table -----------------------------------------------------------------------------

class Table implements PricingTable {
  readonly version: string;

  constructor(
    readonly source: string,
    readonly models: ReadonlyMap<string, ModelPrice>,
    readonly defaultPrice: ModelPrice | undefined,
  ) {
    this.version = versionOf(models, defaultPrice);
  }

  price(model: string, provider?: string): ModelPrice | undefined {
    return (
      this.models.get(model) ??
      (provider === undefined ? undefined : this.models.get(`${provider}/${model}`)) ??
      this.defaultPrice
    );
  }
}

/**
 * sha256 of the canonical table: models sorted by name, each price as the resolved integers.
 * Two files that price every model identically (whatever their format, key order or spelling
 * of a decimal) get the same version; any price change gives a new one.
 */
function versionOf(models: ReadonlyMap<string, ModelPrice>, defaultPrice: ModelPrice | undefined): string {
  const canonical = (p: ModelPrice) => [p.input, p.cachedInput, p.cacheWrite, p.output, p.reasoning, p.maxOutputTokens ?? null];
  const entries = [...models].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([model, p]) => [model, canonical(p)]);
  const body = JSON.stringify({
    format: 'tollgate-pricing/1',
    models: entries,
    default: defaultPrice === undefined ? null : canonical(defaultPrice),
  });
  return createHash('sha256').update(body).digest('hex').slice(0, 16);
}
