import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { defaultPricing } from '../plugin/default-pricing.js';
import { costOf, loadPricing, maxCostOf, parsePricing, PricingError, type ModelPrice } from '../plugin/pricing.js';
import type { Usage } from '../plugin/usage/types.js';

// Prices below are micro-credits (µcr) per 1M tokens: 2.5 credits/1M = 2,500,000 µcr/1M.
const GPT_4O: ModelPrice = { input: 2_500_000, cachedInput: 1_250_000, cacheWrite: 2_500_000, output: 10_000_000, reasoning: 10_000_000 };
const SONNET: ModelPrice = { input: 3_000_000, cachedInput: 300_000, cacheWrite: 3_750_000, output: 15_000_000, reasoning: 15_000_000 };
const REASONER: ModelPrice = { input: 1_000_000, cachedInput: 1_000_000, cacheWrite: 1_000_000, output: 10_000_000, reasoning: 20_000_000 };
const CHEAP: ModelPrice = { input: 300_000, cachedInput: 300_000, cacheWrite: 300_000, output: 250_000, reasoning: 250_000 };

describe('pricing', () => {
  describe('costOf: the rounding rule', () => {
    const cases: Array<{ name: string; usage: Usage; price: ModelPrice; micro: number }> = [
      {
        name: 'plain input and output',
        // 1000 × 2,500,000 + 200 × 10,000,000 = 4,500,000,000 → /1e6 = 4,500 µcr
        usage: { inputTokens: 1000, outputTokens: 200 },
        price: GPT_4O,
        micro: 4_500,
      },
      {
        name: 'cache reads are part of input, priced at cached_input',
        // (1000 − 400) × 2,500,000 + 400 × 1,250,000 + 200 × 10,000,000
        //   = 1,500,000,000 + 500,000,000 + 2,000,000,000 = 4,000,000,000 → 4,000 µcr
        usage: { inputTokens: 1000, cacheReadInputTokens: 400, outputTokens: 200 },
        price: GPT_4O,
        micro: 4_000,
      },
      {
        name: 'cache reads and writes (Anthropic, normalised input)',
        // (10,000 − 6,000 − 3,000) × 3,000,000 + 6,000 × 300,000 + 3,000 × 3,750,000 + 500 × 15,000,000
        //   = 3,000,000,000 + 1,800,000,000 + 11,250,000,000 + 7,500,000,000 = 23,550,000,000 → 23,550 µcr
        usage: { inputTokens: 10_000, cacheReadInputTokens: 6_000, cacheCreationInputTokens: 3_000, outputTokens: 500 },
        price: SONNET,
        micro: 23_550,
      },
      {
        name: 'reasoning is part of output, at its own price when given',
        // 100 × 1,000,000 + (300 − 100) × 10,000,000 + 100 × 20,000,000
        //   = 100,000,000 + 2,000,000,000 + 2,000,000,000 = 4,100,000,000 → 4,100 µcr
        usage: { inputTokens: 100, outputTokens: 300, reasoningOutputTokens: 100 },
        price: REASONER,
        micro: 4_100,
      },
      {
        name: 'reasoning at the output price when no reasoning price is given',
        // 300 × 10,000,000 = 3,000,000,000 → 3,000 µcr (the 100 reasoning tokens are inside the 300)
        usage: { outputTokens: 300, reasoningOutputTokens: 100 },
        price: GPT_4O,
        micro: 3_000,
      },
      {
        name: 'a cost of 0.3 µcr rounds up to 1',
        // 1 × 300,000 = 300,000 → /1e6 = 0.3 → ceil = 1 µcr
        usage: { inputTokens: 1 },
        price: CHEAP,
        micro: 1,
      },
      {
        name: 'an exact micro-credit is not rounded up',
        // 4 × 250,000 = 1,000,000 → /1e6 = 1 µcr exactly
        usage: { outputTokens: 4 },
        price: CHEAP,
        micro: 1,
      },
      {
        name: 'one pico-credit above rounds up',
        // 1 × 300,000 + 3 × 250,000 = 1,050,000 → 1.05 → 2 µcr
        usage: { inputTokens: 1, outputTokens: 3 },
        price: CHEAP,
        micro: 2,
      },
      {
        name: 'rounding happens once per request, not per token type',
        // 1 × 300,000 + 1 × 250,000 = 550,000 → 0.55 → 1 µcr (rounding each part would give 2)
        usage: { inputTokens: 1, outputTokens: 1 },
        price: CHEAP,
        micro: 1,
      },
      {
        name: 'nothing reported costs nothing',
        usage: {},
        price: GPT_4O,
        micro: 0,
      },
      {
        name: 'exact beyond 2^53 pico-credits',
        // 9,007,199 × 1,000,001 = 9,007,208,007,199 (> 2^53 = 9,007,199,254,740,992)
        //   → /1e6 = 9,007,208.007199 → 9,007,209 µcr
        usage: { inputTokens: 9_007_199 },
        price: { ...CHEAP, input: 1_000_001 },
        micro: 9_007_209,
      },
      {
        name: 'parts above their total: each reported token charged once',
        // uncached = max(0, 100 − 150) = 0; 150 × 1,250,000 = 187,500,000 → 187.5 → 188 µcr
        usage: { inputTokens: 100, cacheReadInputTokens: 150 },
        price: GPT_4O,
        micro: 188,
      },
    ];
    for (const { name, usage, price, micro } of cases) {
      it(name, () => expect(costOf(usage, price)).to.equal(micro));
    }

    it('refuses a count that is not a non-negative integer', () => {
      expect(() => costOf({ inputTokens: -1 }, GPT_4O)).to.throw(RangeError, /inputTokens.*-1/);
      expect(() => costOf({ outputTokens: 1.5 }, GPT_4O)).to.throw(RangeError, /outputTokens.*1\.5/);
    });
  });

  describe('maxCostOf: the reservation bound', () => {
    it('prices input at the dearest input price and output at the dearer output price', () => {
      // gpt-4o: 1000 × max(2,500,000, 1,250,000, 2,500,000) + 200 × 10,000,000 = 4,500,000,000 → 4,500 µcr
      expect(maxCostOf({ inputTokens: 1000, outputTokens: 200 }, GPT_4O)).to.equal(4_500);
      // Sonnet: a cache write (3,750,000) costs more than input: 1000 × 3,750,000 + 100 × 15,000,000
      //   = 3,750,000,000 + 1,500,000,000 = 5,250,000,000 → 5,250 µcr
      expect(maxCostOf({ inputTokens: 1000, outputTokens: 100 }, SONNET)).to.equal(5_250);
      // Reasoner: 10 × 1,000,000 + 10 × max(10,000,000, 20,000,000) = 210,000,000 → 210 µcr
      expect(maxCostOf({ inputTokens: 10, outputTokens: 10 }, REASONER)).to.equal(210);
    });

    it('is never below costOf for the same totals', () => {
      const price = fc.record({
        input: fc.nat(100_000_000),
        cachedInput: fc.nat(100_000_000),
        cacheWrite: fc.nat(100_000_000),
        output: fc.nat(100_000_000),
        reasoning: fc.nat(100_000_000),
      });
      const share = fc.double({ min: 0, max: 1, noNaN: true });
      const usage = fc
        .record({ input: fc.nat(2_000_000), output: fc.nat(200_000), a: share, b: share, r: share })
        .map(({ input, output, a, b, r }) => {
          const cacheRead = Math.floor(input * a);
          const cacheCreation = Math.floor((input - cacheRead) * b);
          return {
            inputTokens: input,
            outputTokens: output,
            cacheReadInputTokens: cacheRead,
            cacheCreationInputTokens: cacheCreation,
            reasoningOutputTokens: Math.floor(output * r),
          };
        });
      fc.assert(
        fc.property(usage, price, (u, p) => {
          expect(costOf(u, p)).to.be.at.most(maxCostOf({ inputTokens: u.inputTokens, outputTokens: u.outputTokens }, p));
        }),
      );
    });
  });

  describe("Tollgate's own format", () => {
    it('converts decimal credits per 1M tokens exactly and applies the fallbacks', () => {
      const table = parsePricing(
        {
          models: {
            'gpt-4o': { input: 2.5, cached_input: 1.25, output: 10, max_output_tokens: 16_384 },
            'o-like': { input: 1.234567, output: 0.075, reasoning: 20 },
          },
        },
        'test',
      );
      expect(table.price('gpt-4o')).to.deep.equal({
        input: 2_500_000, // 2.5 × 1e6
        cachedInput: 1_250_000,
        cacheWrite: 2_500_000, // unpriced: falls back to input
        output: 10_000_000,
        reasoning: 10_000_000, // unpriced: falls back to output
        maxOutputTokens: 16_384,
      });
      expect(table.price('o-like')).to.deep.equal({
        input: 1_234_567, // 1.234567 × 1e6, exact (the float 1.234567 × 1e6 is 1234566.9999999998)
        cachedInput: 1_234_567,
        cacheWrite: 1_234_567,
        output: 75_000,
        reasoning: 20_000_000,
      });
    });

    it('uses the default for unnamed models, and answers undefined without one', () => {
      const withDefault = parsePricing({ models: {}, default: { input: 1, output: 2 } }, 'test');
      expect(withDefault.price('anything')?.output).to.equal(2_000_000);
      const without = parsePricing({ models: { a: { input: 1, output: 2 } } }, 'test');
      expect(without.price('anything')).to.equal(undefined);
    });
  });

  describe("LiteLLM's format", () => {
    const litellm = {
      sample_spec: { input_cost_per_token: 0, output_cost_per_token: 0, max_tokens: 'LEGACY parameter' },
      'gpt-4o': {
        input_cost_per_token: 2.5e-6,
        output_cost_per_token: 0.00001,
        cache_read_input_token_cost: 1.25e-6,
        max_output_tokens: 16384,
        max_tokens: 16384,
        litellm_provider: 'openai',
        mode: 'chat',
      },
      'anthropic/claude-sonnet-4-5': {
        input_cost_per_token: 3e-6,
        output_cost_per_token: 0.000015,
        cache_read_input_token_cost: 3e-7,
        cache_creation_input_token_cost: 3.75e-6,
        max_tokens: 64000,
        litellm_provider: 'anthropic',
        mode: 'chat',
      },
      'o-tiny': { input_cost_per_token: 1e-13, output_cost_per_token: 1.1e-6, output_cost_per_reasoning_token: 2.2e-6 },
      'dall-e-3': { output_cost_per_image: 0.04, litellm_provider: 'openai', mode: 'image_generation' },
    };
    const table = parsePricing(litellm, 'litellm.json');

    it('converts USD per token to integer micro-credits per 1M tokens', () => {
      expect(table.price('gpt-4o')).to.deep.equal({
        input: 2_500_000, // 2.5e-6 × 1e12
        cachedInput: 1_250_000,
        cacheWrite: 2_500_000,
        output: 10_000_000,
        reasoning: 10_000_000,
        maxOutputTokens: 16_384,
      });
      expect(table.price('claude-sonnet-4-5', 'anthropic')).to.deep.equal({
        input: 3_000_000,
        cachedInput: 300_000, // 3e-7 × 1e12; the float product is 299999.99999999994
        cacheWrite: 3_750_000,
        output: 15_000_000,
        reasoning: 15_000_000,
        maxOutputTokens: 64_000, // from the legacy max_tokens
      });
    });

    it('rounds a price finer than a pico-credit per token up, never to free', () => {
      // 1e-13 USD/token × 1e12 = 0.1 µcr per 1M tokens → 1
      expect(table.price('o-tiny')).to.include({ input: 1, output: 1_100_000, reasoning: 2_200_000 });
    });

    it('skips sample_spec and entries not priced per token', () => {
      expect([...table.models.keys()]).to.have.members(['gpt-4o', 'anthropic/claude-sonnet-4-5', 'o-tiny']);
    });

    it('takes an output limit of 0 as unknown, as LiteLLM writes it for embedding entries', () => {
      // As LiteLLM ships it: 0 for all three limits, still priced per token.
      const embedding = {
        'vercel_ai_gateway/amazon/titan-embed-text-v2': {
          input_cost_per_token: 2e-8,
          litellm_provider: 'vercel_ai_gateway',
          max_input_tokens: 0,
          max_output_tokens: 0,
          max_tokens: 0,
          mode: 'chat',
          output_cost_per_token: 0.0,
        },
        'legacy-limit': { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6, max_output_tokens: 0, max_tokens: 4096 },
      };
      const parsed = parsePricing({ ...litellm, ...embedding }, 'litellm.json');
      expect(parsed.price('vercel_ai_gateway/amazon/titan-embed-text-v2')).to.deep.equal({
        input: 20_000, // 2e-8 × 1e12
        cachedInput: 20_000,
        cacheWrite: 20_000,
        output: 0,
        reasoning: 0,
      });
      expect(parsed.price('legacy-limit')?.maxOutputTokens).to.equal(4096);
    });

    it('looks up the exact name first, then <provider>/<model>', () => {
      expect(table.price('claude-sonnet-4-5')).to.equal(undefined);
      expect(table.price('claude-sonnet-4-5', 'openai')).to.equal(undefined);
      expect(table.price('anthropic/claude-sonnet-4-5')?.input).to.equal(3_000_000);
      expect(table.price('gpt-4o', 'openai')?.input).to.equal(2_500_000);
    });
  });

  describe('version', () => {
    const own = { models: { b: { input: 2.5, output: 10 }, a: { input: 1, output: 2, max_output_tokens: 100 } } };

    it('is a 16-hex-digit hash of the canonical table', () => {
      expect(parsePricing(own, 'x').version).to.match(/^[0-9a-f]{16}$/);
    });

    it('ignores key order, spelling and format; changes with any price', () => {
      const reordered = { models: { a: { max_output_tokens: 100, output: 2.0, input: 1 }, b: { output: 10, input: 2.5 } } };
      const asLiteLLM = {
        a: { input_cost_per_token: 1e-6, output_cost_per_token: 2e-6, max_output_tokens: 100 },
        b: { input_cost_per_token: 2.5e-6, output_cost_per_token: 1e-5 },
      };
      const version = parsePricing(own, 'x').version;
      expect(parsePricing(reordered, 'y').version).to.equal(version);
      expect(parsePricing(asLiteLLM, 'z').version).to.equal(version);
      const changed = { models: { ...own.models, b: { input: 2.500001, output: 10 } } };
      expect(parsePricing(changed, 'x').version).to.not.equal(version);
    });
  });

  describe('validation', () => {
    const cases: Array<{ name: string; json: unknown; error: RegExp }> = [
      { name: 'negative price', json: { models: { m: { input: -1, output: 1 } } }, error: /model "m" field "input" must be a non-negative number, got -1/ },
      { name: 'non-numeric price', json: { models: { m: { input: '2.5', output: 1 } } }, error: /model "m" field "input" must be a non-negative number, got "2\.5"/ },
      { name: 'NaN price', json: { models: { m: { input: 1, output: NaN } } }, error: /model "m" field "output" must be a non-negative number, got NaN/ },
      { name: 'sub-micro own price', json: { models: { m: { input: 0.0000001, output: 1 } } }, error: /model "m" field "input" has more than 6 decimal places: 1e-7/ },
      { name: 'missing output price', json: { models: { m: { input: 1 } } }, error: /model "m" has no output price/ },
      { name: 'misspelt field', json: { models: { m: { input: 1, ouput: 1 } } }, error: /model "m" has unknown field "ouput"/ },
      { name: 'bad output limit', json: { models: { m: { input: 1, output: 1, max_output_tokens: 1.5 } } }, error: /model "m" field "max_output_tokens" must be a positive integer, got 1\.5/ },
      { name: 'bad default', json: { models: {}, default: { input: 1, output: -2 } }, error: /model "default" field "output" must be a non-negative number, got -2/ },
      { name: 'LiteLLM negative price', json: { x: { input_cost_per_token: 1e-6, output_cost_per_token: -1e-6 } }, error: /model "x" field "output_cost_per_token" must be a non-negative number, got -0\.000001/ },
      { name: 'LiteLLM string price', json: { x: { input_cost_per_token: 'free', output_cost_per_token: 0 } }, error: /model "x" field "input_cost_per_token" must be a non-negative number, got "free"/ },
      { name: 'unknown format', json: { hello: 'world' }, error: /not a pricing file/ },
      { name: 'not an object', json: [1, 2], error: /must be a JSON object/ },
    ];
    for (const { name, json, error } of cases) {
      it(name, () => expect(() => parsePricing(json, 'prices.json')).to.throw(PricingError, error));
    }
  });

  describe('loadPricing', () => {
    let dir: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'tollgate-pricing-'));
    });
    after(() => rm(dir, { recursive: true, force: true }));

    it('reads a file and names it in errors', async () => {
      const good = join(dir, 'good.json');
      await writeFile(good, JSON.stringify({ models: { m: { input: 1, output: 2 } } }));
      expect((await loadPricing(good)).price('m')?.output).to.equal(2_000_000);
      const bad = join(dir, 'bad.json');
      await writeFile(bad, '{"models": ');
      let error: unknown;
      await loadPricing(bad).catch((e: unknown) => (error = e));
      expect(error).to.be.instanceOf(PricingError);
      expect((error as Error).message).to.contain(bad).and.contain('not valid JSON');
    });
  });

  describe('the built-in table', () => {
    it('prices the common models, each with an output limit', () => {
      const table = defaultPricing();
      for (const model of ['gpt-4.1', 'gpt-4.1-mini', 'gpt-4o', 'gpt-4o-mini', 'gpt-5', 'gpt-5-mini', 'o3', 'o4-mini', 'claude-sonnet-4-5', 'claude-opus-4-1', 'claude-haiku-4-5']) {
        expect(table.price(model), model).to.not.equal(undefined);
      }
      for (const [model, price] of table.models) expect(price.maxOutputTokens, model).to.be.a('number');
      expect(table.price('unknown-model')).to.equal(undefined);
      // gpt-4o: 2.5 / 1.25 / 10 credits per 1M tokens
      expect(table.price('gpt-4o')).to.include({ input: 2_500_000, cachedInput: 1_250_000, output: 10_000_000 });
    });
  });
});
