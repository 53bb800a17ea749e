/**
 * Settlement with signing keys: a billing span settles only when its signature holds under one
 * of settlement's keys. Nobody who can reach the endpoint can lower a charge by sending, or
 * altering, a span. Prices: gpt-4o input 2.5, output 10 µcr per token; the standard usage
 * (1000 input + 200 output) costs 2,500 + 2,000 = 4,500 µcr.
 */
import { randomUUID } from 'node:crypto';
import type { Attributes } from '@opentelemetry/api';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { createSettlementServer } from '../../collector/index.js';
import { openLedger } from '../../ledger/index.js';
import type { Ledger } from '../../ledger/types.js';
import { parsePricing } from '../../plugin/pricing.js';
import { ATTR_GEN_AI_USAGE_OUTPUT_TOKENS, ATTR_TOLLGATE_SIGNATURE, ATTR_TOLLGATE_SIGNATURE_KEY_ID } from '../../plugin/semconv.js';
import { signature, type SigningKey } from '../../plugin/signing.js';
import { billingAttributes, close, exportSpans, listen } from './helpers.js';

const PRICING = parsePricing({ models: { 'gpt-4o': { input: 2.5, output: 10 } } }, 'test');
const OLD: SigningKey = { id: 'old', secret: 'old-secret-0123456789' };
const NEW: SigningKey = { id: 'new', secret: 'new-secret-0123456789' };
const TOKEN = 'settle-token';

function signed(attributes: Attributes, key: SigningKey): Attributes {
  return {
    ...attributes,
    [ATTR_TOLLGATE_SIGNATURE]: signature((name) => attributes[name], key.secret),
    [ATTR_TOLLGATE_SIGNATURE_KEY_ID]: key.id,
  };
}

describe('collector: signed billing spans', function () {
  let ledger: Ledger;
  let server: ReturnType<typeof createSettlementServer>;
  let url: string;
  const registry = new Registry();

  before(async () => {
    ledger = await openLedger('memory://');
    // During a rotation settlement holds both keys.
    server = createSettlementServer({ ledger, pricing: [PRICING], tokens: [TOKEN], signingKeys: [OLD, NEW], registry, onError: () => {} });
    url = `${await listen(server)}/v1/traces`;
  });
  after(async () => {
    await close(server);
    await ledger.close();
  });

  async function reservation(amount: number) {
    const accountId = `acct-${randomUUID()}`;
    const reservationId = randomUUID();
    await ledger.createAccount(accountId, 1_000_000);
    await ledger.reserve({ reservationId, accountId, amount, ttlSeconds: 300, provider: 'openai', model: 'gpt-4o', pricingVersion: PRICING.version });
    return { accountId, reservationId, amount, pricingVersion: PRICING.version };
  }

  it('settles spans signed with either key of a rotation', async () => {
    for (const key of [OLD, NEW]) {
      const r = await reservation(10_000);
      await exportSpans(url, 'protobuf', [signed(billingAttributes(r), key)], { token: TOKEN });
      expect(await ledger.account(r.accountId)).to.deep.include({ balance: 1_000_000 - 4_500, held: 0 });
    }
  });

  it('rejects unsigned, altered and foreign-signed spans; their reservations stay open for the sweeper', async () => {
    const unsigned = await reservation(10_000);
    const altered = await reservation(10_000);
    const foreign = await reservation(10_000);
    const tampered = signed(billingAttributes(altered), NEW);
    // Someone on the way lowers the output count after the gateway signed it.
    tampered[ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] = 1;
    const run = await exportSpans(
      url,
      'json',
      [billingAttributes(unsigned), tampered, signed(billingAttributes(foreign), { id: 'new', secret: 'not-the-real-secret-000' })],
      { token: TOKEN, processor: 'batch' },
    );
    expect(run.warnings.join('\n')).to.match(/3 billing span\(s\) rejected/);
    for (const r of [unsigned, altered, foreign]) {
      expect(await ledger.account(r.accountId)).to.deep.include({ balance: 1_000_000, held: 10_000 });
    }
    expect(await registry.getSingleMetricAsString('tollgate_settlements_total')).to.match(/result="invalid_signature"} 3/);
  });
});
