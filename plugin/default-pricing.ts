/**
 * The built-in pricing table, so that `tollgate serve` works without a `--pricing` file.
 *
 * OPERATORS SHOULD SUPPLY THEIR OWN (`--pricing FILE`, Tollgate's format or LiteLLM's
 * model_prices_and_context_window.json): these are the providers' public list prices in USD per
 * 1M tokens, as published around late 2025 (https://openai.com/api/pricing,
 * https://docs.anthropic.com/en/docs/about-claude/pricing), with 1 credit = 1 USD. They change,
 * and they are not what you charge your own customers. A different table gets a different
 * `tollgate.pricing.version`; settlement must be given every table the gateways use.
 *
 * Anthropic's `cache_write` is the 5-minute cache write (1.25 × input). Models are listed under
 * their aliases and dated snapshot names, since clients send either.
 */
import { parsePricing, type PricingTable } from './pricing.js';

const openai = (input: number, cached_input: number, output: number, max_output_tokens: number) => ({
  input,
  cached_input,
  output,
  max_output_tokens,
});
const anthropic = (input: number, cache_read: number, cache_write: number, output: number, max_output_tokens: number) => ({
  input,
  cached_input: cache_read,
  cache_write,
  output,
  max_output_tokens,
});

const GPT_4_1 = openai(2, 0.5, 8, 32_768);
const GPT_4_1_MINI = openai(0.4, 0.1, 1.6, 32_768);
const GPT_4_1_NANO = openai(0.1, 0.025, 0.4, 32_768);
const GPT_4O = openai(2.5, 1.25, 10, 16_384);
const GPT_4O_MINI = openai(0.15, 0.075, 0.6, 16_384);
const GPT_5 = openai(1.25, 0.125, 10, 128_000);
const GPT_5_MINI = openai(0.25, 0.025, 2, 128_000);
const GPT_5_NANO = openai(0.05, 0.005, 0.4, 128_000);
const O3 = openai(2, 0.5, 8, 100_000);
const O4_MINI = openai(1.1, 0.275, 4.4, 100_000);
const CLAUDE_SONNET_4 = anthropic(3, 0.3, 3.75, 15, 64_000);
const CLAUDE_OPUS_4 = anthropic(15, 1.5, 18.75, 75, 32_000);
const CLAUDE_OPUS_4_5 = anthropic(5, 0.5, 6.25, 25, 64_000);
const CLAUDE_HAIKU_4_5 = anthropic(1, 0.1, 1.25, 5, 64_000);
const CLAUDE_HAIKU_3_5 = anthropic(0.8, 0.08, 1, 4, 8_192);

/** In Tollgate's own pricing format (credits per 1M tokens). */
export const DEFAULT_PRICING_FILE = {
  models: {
    'gpt-4.1': GPT_4_1,
    'gpt-4.1-2025-04-14': GPT_4_1,
    'gpt-4.1-mini': GPT_4_1_MINI,
    'gpt-4.1-mini-2025-04-14': GPT_4_1_MINI,
    'gpt-4.1-nano': GPT_4_1_NANO,
    'gpt-4.1-nano-2025-04-14': GPT_4_1_NANO,
    'gpt-4o': GPT_4O,
    'gpt-4o-2024-08-06': GPT_4O,
    'gpt-4o-2024-11-20': GPT_4O,
    'gpt-4o-mini': GPT_4O_MINI,
    'gpt-4o-mini-2024-07-18': GPT_4O_MINI,
    'gpt-5': GPT_5,
    'gpt-5-2025-08-07': GPT_5,
    'gpt-5-mini': GPT_5_MINI,
    'gpt-5-mini-2025-08-07': GPT_5_MINI,
    'gpt-5-nano': GPT_5_NANO,
    'gpt-5-nano-2025-08-07': GPT_5_NANO,
    o3: O3,
    'o3-2025-04-16': O3,
    'o4-mini': O4_MINI,
    'o4-mini-2025-04-16': O4_MINI,
    'claude-sonnet-4-5': CLAUDE_SONNET_4,
    'claude-sonnet-4-5-20250929': CLAUDE_SONNET_4,
    'claude-sonnet-4-0': CLAUDE_SONNET_4,
    'claude-sonnet-4-20250514': CLAUDE_SONNET_4,
    'claude-opus-4-5': CLAUDE_OPUS_4_5,
    'claude-opus-4-5-20251101': CLAUDE_OPUS_4_5,
    'claude-opus-4-1': CLAUDE_OPUS_4,
    'claude-opus-4-1-20250805': CLAUDE_OPUS_4,
    'claude-opus-4-0': CLAUDE_OPUS_4,
    'claude-opus-4-20250514': CLAUDE_OPUS_4,
    'claude-haiku-4-5': CLAUDE_HAIKU_4_5,
    'claude-haiku-4-5-20251001': CLAUDE_HAIKU_4_5,
    'claude-3-5-haiku-latest': CLAUDE_HAIKU_3_5,
    'claude-3-5-haiku-20241022': CLAUDE_HAIKU_3_5,
  },
};

const BUILT_IN = parsePricing(DEFAULT_PRICING_FILE, 'built-in');

/** The built-in table (parsed once). */
export function defaultPricing(): PricingTable {
  return BUILT_IN;
}
