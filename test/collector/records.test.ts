import { expect } from 'chai';
import type { AttributeValue, OtlpSpan } from '../../collector/otlp.js';
import { pricingCatalogue, toSettlement, type SpanVerdict } from '../../collector/records.js';
import { parsePricing } from '../../plugin/pricing.js';
import {
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_TOLLGATE_ACCOUNT_ID,
  ATTR_TOLLGATE_OUTCOME,
  ATTR_TOLLGATE_PRICING_VERSION,
  ATTR_TOLLGATE_RESERVATION_AMOUNT,
  ATTR_TOLLGATE_RESERVATION_ID,
  ATTR_TOLLGATE_USAGE_SOURCE,
} from '../../plugin/semconv.js';

// µcr per token: input 2.5, cached 1.25, output 10.
const PRICING = parsePricing({ models: { 'gpt-4o': { input: 2.5, cached_input: 1.25, output: 10 } } }, 'test');
const catalogue = pricingCatalogue([PRICING]);
const END = 1_700_000_000_000;

function span(attributes: Record<string, AttributeValue | undefined>): OtlpSpan {
  const base: Record<string, AttributeValue | undefined> = {
    [ATTR_TOLLGATE_RESERVATION_ID]: 'r-1',
    [ATTR_TOLLGATE_ACCOUNT_ID]: 'acct',
    [ATTR_TOLLGATE_RESERVATION_AMOUNT]: 10_000,
    [ATTR_TOLLGATE_OUTCOME]: 'completed',
    [ATTR_TOLLGATE_USAGE_SOURCE]: 'reported',
    [ATTR_TOLLGATE_PRICING_VERSION]: PRICING.version,
    [ATTR_GEN_AI_PROVIDER_NAME]: 'openai',
    [ATTR_GEN_AI_REQUEST_MODEL]: 'gpt-4o',
    [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: 1000,
    [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: 200,
    ...attributes,
  };
  const defined = Object.entries(base).filter((entry): entry is [string, AttributeValue] => entry[1] !== undefined);
  return { spanId: 'abcd', endTimeMs: END, attributes: new Map(defined) };
}

function cost(verdict: SpanVerdict): number | null {
  expect(verdict.kind, JSON.stringify(verdict)).to.equal('settle');
  return (verdict as Extract<SpanVerdict, { kind: 'settle' }>).request.cost;
}

describe('collector/records', () => {
  it('ignores spans that are not billing spans', () => {
    expect(toSettlement({ spanId: 'x', endTimeMs: END, attributes: new Map([['http.route', '/']]) }, catalogue)).to.deep.equal({ kind: 'ignore' });
  });

  it('prices reported usage under the span pricing version, and keeps the usage', () => {
    const verdict = toSettlement(span({ [ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS]: 400 }), catalogue);
    expect(verdict).to.deep.equal({
      kind: 'settle',
      request: {
        reservationId: 'r-1',
        accountId: 'acct',
        outcome: 'completed',
        pricingVersion: PRICING.version,
        spanEndTime: new Date(END),
        // 600 × 2,500,000 + 400 × 1,250,000 + 200 × 10,000,000 = 4,000,000,000 → 4,000 µcr
        cost: 4_000,
        usage: { inputTokens: 1000, outputTokens: 200, cacheReadInputTokens: 400 },
      },
    });
  });

  const costs: Array<[string, Record<string, AttributeValue | undefined>, number | null]> = [
    // 1000 × 2,500,000 + 200 × 10,000,000 = 4,500,000,000 → 4,500 µcr
    ['reported usage, completed', {}, 4_500],
    ['reported usage of an incomplete stream', { [ATTR_TOLLGATE_OUTCOME]: 'incomplete' }, 4_500],
    ['reported usage beats upstream_error', { [ATTR_TOLLGATE_OUTCOME]: 'upstream_error', [ATTR_HTTP_RESPONSE_STATUS_CODE]: 500 }, 4_500],
    ['usage missing: the reserved amount (null)', { [ATTR_TOLLGATE_USAGE_SOURCE]: 'missing' }, null],
    ['usage missing on a cancelled request', { [ATTR_TOLLGATE_USAGE_SOURCE]: 'missing', [ATTR_TOLLGATE_OUTCOME]: 'cancelled' }, null],
    ['upstream_error without a status: never served, 0', { [ATTR_TOLLGATE_USAGE_SOURCE]: 'missing', [ATTR_TOLLGATE_OUTCOME]: 'upstream_error' }, 0],
    ['upstream_error with a 502: never served, 0', { [ATTR_TOLLGATE_USAGE_SOURCE]: 'missing', [ATTR_TOLLGATE_OUTCOME]: 'upstream_error', [ATTR_HTTP_RESPONSE_STATUS_CODE]: 502 }, 0],
    ['upstream_error after a 200: served, the reserved amount', { [ATTR_TOLLGATE_USAGE_SOURCE]: 'missing', [ATTR_TOLLGATE_OUTCOME]: 'upstream_error', [ATTR_HTTP_RESPONSE_STATUS_CODE]: 200 }, null],
    ['usage missing needs no price: settled under an unknown version', { [ATTR_TOLLGATE_USAGE_SOURCE]: 'missing', [ATTR_TOLLGATE_PRICING_VERSION]: 'feedfacefeedface' }, null],
  ];
  for (const [name, attributes, expected] of costs) {
    it(`cost: ${name}`, () => expect(cost(toSettlement(span(attributes), catalogue))).to.equal(expected));
  }

  it('rejects reported usage under a pricing version it was not given, never pricing it from another table', () => {
    expect(toSettlement(span({ [ATTR_TOLLGATE_PRICING_VERSION]: 'feedfacefeedface' }), catalogue)).to.deep.equal({
      kind: 'reject',
      result: 'unknown_pricing_version',
      message: 'span abcd: pricing version feedfacefeedface is not one settlement was given',
    });
  });

  const invalid: Array<[string, Record<string, AttributeValue | undefined>, RegExp]> = [
    ['no account', { [ATTR_TOLLGATE_ACCOUNT_ID]: undefined }, /tollgate\.account\.id is missing/],
    ['an empty reservation id', { [ATTR_TOLLGATE_RESERVATION_ID]: '' }, /tollgate\.reservation\.id must be a non-empty string, got ""/],
    ['no amount', { [ATTR_TOLLGATE_RESERVATION_AMOUNT]: undefined }, /tollgate\.reservation\.amount is missing/],
    ['a fractional amount', { [ATTR_TOLLGATE_RESERVATION_AMOUNT]: 1.5 }, /tollgate\.reservation\.amount must be a non-negative integer, got 1\.5/],
    ['an amount as text', { [ATTR_TOLLGATE_RESERVATION_AMOUNT]: '100' }, /tollgate\.reservation\.amount must be a non-negative integer, got "100"/],
    ['an unknown outcome', { [ATTR_TOLLGATE_OUTCOME]: 'done' }, /tollgate\.outcome must be one of completed, incomplete, failed, cancelled, upstream_error, got "done"/],
    ['an unknown usage source', { [ATTR_TOLLGATE_USAGE_SOURCE]: 'guessed' }, /tollgate\.usage\.source must be one of reported, missing/],
    ['no pricing version', { [ATTR_TOLLGATE_PRICING_VERSION]: undefined }, /tollgate\.pricing\.version is missing/],
    ['a negative token count', { [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: -5 }, /gen_ai\.usage\.output_tokens must be a non-negative integer, got -5/],
    ['an unsafe token count', { [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: 2 ** 53 }, /gen_ai\.usage\.input_tokens must be a non-negative integer/],
    ['reported usage without output tokens', { [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: undefined }, /usage is reported but gen_ai\.usage\.output_tokens is missing/],
    ['a status code as text', { [ATTR_HTTP_RESPONSE_STATUS_CODE]: '200' }, /http\.response\.status_code must be a non-negative integer/],
    ['a model without a price', { [ATTR_GEN_AI_REQUEST_MODEL]: 'gpt-9' }, /model gpt-9 has no price in pricing version/],
    ['an id longer than the ledger stores', { [ATTR_TOLLGATE_RESERVATION_ID]: 'r'.repeat(257) }, /reservationId must be a non-empty string of at most 256 characters/],
    ['reported usage without a model', { [ATTR_GEN_AI_REQUEST_MODEL]: undefined }, /gen_ai\.request\.model is missing/],
  ];
  for (const [name, attributes, message] of invalid) {
    it(`invalid: ${name}`, () => {
      const verdict = toSettlement(span(attributes), catalogue);
      expect(verdict.kind).to.equal('reject');
      expect(verdict).to.include({ result: 'invalid' });
      expect((verdict as { message: string }).message).to.match(/^span abcd: /).and.match(message);
    });
  }

  it('invalid: a span ending after the year 9999, which PostgreSQL cannot store (it failed the whole batch with 503)', () => {
    // 253402300800000000000 ns, as OTLP/JSON can send it (beyond fixed64, so only in JSON).
    const verdict = toSettlement({ ...span({}), endTimeMs: 253_402_300_800_000 }, catalogue);
    expect(verdict).to.include({ kind: 'reject', result: 'invalid' });
    expect((verdict as { message: string }).message).to.match(/spanEndTime must be a valid Date in the years 1 to 9999/);
  });

  it('invalid: a span without an end time', () => {
    expect(toSettlement({ ...span({}), endTimeMs: 0 }, catalogue)).to.include({ kind: 'reject', result: 'invalid', message: 'span abcd: has no end time' });
  });
});
