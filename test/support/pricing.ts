/**
 * The prices the plugin tests bill with (credits per 1M tokens), kept round so that the expected
 * micro-credit amounts can be worked out by hand in each test's comments.
 */
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parsePricing } from '../../plugin/pricing.js';

/** The pricing file's contents, in Tollgate's own format. */
export const TEST_PRICING_FILE = {
  models: {
    // µcr per token: input 2, cached 0.5, output 8
    'gpt-4.1': { input: 2, cached_input: 0.5, output: 8, max_output_tokens: 32768 },
    // µcr per token: input 0.15, cached 0.075, output 0.6
    'gpt-4o-mini': { input: 0.15, cached_input: 0.075, output: 0.6, max_output_tokens: 16384 },
    // µcr per token: input 3, cache read 0.3, cache write 3.75, output 15
    'claude-sonnet-4-6': { input: 3, cached_input: 0.3, cache_write: 3.75, output: 15, max_output_tokens: 64000 },
  },
};

export const TEST_PRICING = parsePricing(TEST_PRICING_FILE, 'test pricing');

/** The same table as a file, for processes started with --pricing. */
export function writeTestPricingFile(): string {
  const path = join(tmpdir(), `tollgate-test-pricing-${process.pid}.json`);
  writeFileSync(path, JSON.stringify(TEST_PRICING_FILE));
  return path;
}
