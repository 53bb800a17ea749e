/**
 * The settlement endpoint end to end: spans from the real OpenTelemetry exporters, over loopback,
 * into a real (in-memory PGlite) ledger, with exact balances.
 *
 * Prices (µcr per token): gpt-4o input 2.5, cached input 1.25, output 10. Every account starts
 * with 1,000,000 µcr. The standard usage, 1000 input + 200 output tokens, costs
 * 1000 × 2,500,000 + 200 × 10,000,000 = 4,500,000,000 → /1e6 = 4,500 µcr.
 */
import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { Attributes } from '@opentelemetry/api';
import { ExportResultCode } from '@opentelemetry/core';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import protobuf from 'protobufjs';
import { createSettlementServer, SettlementOptionError, startSweeper } from '../../collector/index.js';
import type { SettlementServerOptions } from '../../collector/index.js';
import { openLedger } from '../../ledger/index.js';
import type { Ledger } from '../../ledger/types.js';
import { parsePricing } from '../../plugin/pricing.js';
import { post } from '../support/http.js';
import { billingAttributes, close, exportSpans, listen, type ExportOptions } from './helpers.js';
import {
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_TOLLGATE_OUTCOME,
  ATTR_TOLLGATE_PRICING_VERSION,
  ATTR_TOLLGATE_USAGE_SOURCE,
  METRIC_OPEN_RESERVATIONS,
  METRIC_OVERRUN_CREDITS,
  METRIC_SETTLED_CREDITS,
  METRIC_SETTLEMENT_LAG,
  METRIC_SETTLEMENTS,
} from '../../plugin/semconv.js';

const PRICING = parsePricing({ models: { 'gpt-4o': { input: 2.5, cached_input: 1.25, output: 10 } } }, 'test');
const OPENING = 1_000_000;
const TOKEN = 'settle-token';
const ROTATED = 'settle-token-next';

/** google.rpc.Status, written from google/rpc/status.proto, to read the error bodies. */
const Status = protobuf.parse('syntax = "proto3"; message Status { int32 code = 1; string message = 2; }').root.lookupType('Status');

describe('collector: settlement endpoint', function () {
  this.timeout(60_000);
  let ledger: Ledger;
  let registry: Registry;
  const servers: Array<ReturnType<typeof createSettlementServer>> = [];

  async function start(options: Partial<SettlementServerOptions> = {}): Promise<string> {
    const server = createSettlementServer({ ledger, pricing: [PRICING], tokens: [TOKEN, ROTATED], registry, onError: () => {}, ...options });
    servers.push(server);
    return `${await listen(server)}/v1/traces`;
  }

  let url: string;
  before(async () => {
    ledger = await openLedger('memory://');
    registry = new Registry();
    url = await start();
  });
  after(async () => {
    await Promise.all(servers.map(close));
    await ledger.close();
  });

  /** A fresh account with an open reservation of `amount` µcr. */
  async function reservation(amount: number, ttlSeconds = 300) {
    const accountId = `acct-${randomUUID()}`;
    const reservationId = randomUUID();
    await ledger.createAccount(accountId, OPENING);
    const reserved = await ledger.reserve({
      reservationId,
      accountId,
      amount,
      ttlSeconds,
      provider: 'openai',
      model: 'gpt-4o',
      pricingVersion: PRICING.version,
    });
    expect(reserved.ok).to.equal(true);
    return { accountId, reservationId };
  }

  const billing = (ids: { accountId: string; reservationId: string }, amount: number, overrides: Attributes = {}) =>
    billingAttributes({ ...ids, amount, pricingVersion: PRICING.version }, overrides);

  async function send(spans: Attributes[], encoding: 'protobuf' | 'json' = 'protobuf', options: ExportOptions = {}, to = url) {
    const run = await exportSpans(to, encoding, spans, { token: TOKEN, ...options });
    for (const result of run.results) expect(result.code, String(result.error)).to.equal(ExportResultCode.SUCCESS);
    return run;
  }

  async function balance(accountId: string) {
    const account = await ledger.account(accountId);
    return { balance: account!.balance, held: account!.held };
  }

  async function counter(name: string, labels: Record<string, string> = {}): Promise<number> {
    const metric = await registry.getSingleMetric(name)!.get();
    const value = metric.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l));
    return value?.value ?? 0;
  }

  describe('settles', () => {
    for (const [encoding, gzip] of [['protobuf', true], ['json', false], ['protobuf', false], ['json', true]] as const) {
      it(`a completed request at its reported cost (${encoding}${gzip ? ', gzip' : ''})`, async () => {
        const ids = await reservation(10_000);
        const settledBefore = await counter(METRIC_SETTLEMENTS, { result: 'settled' });
        const run = await send([billing(ids, 10_000)], encoding, { gzip });
        expect(run.warnings).to.deep.equal([]);
        // 1,000,000 − 4,500; the other 5,500 reserved µcr are released.
        expect(await balance(ids.accountId)).to.deep.equal({ balance: 995_500, held: 0 });
        expect(await counter(METRIC_SETTLEMENTS, { result: 'settled' })).to.equal(settledBefore + 1);
      });
    }

    it('a cost above the reservation: capped at the reserved amount by default', async () => {
      const ids = await reservation(1_000);
      const overrunBefore = await counter(METRIC_OVERRUN_CREDITS);
      await send([billing(ids, 1_000)]);
      // min(4,500, 1,000) = 1,000 charged; the 3,500 µcr over-run is recorded, not debited.
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 999_000, held: 0 });
      expect((await counter(METRIC_OVERRUN_CREDITS)) - overrunBefore).to.be.closeTo(0.0035, 1e-12);
    });

    it("a cost above the reservation: charged in full under the 'charge' policy", async () => {
      const charging = await start({ overrunPolicy: 'charge', registry: new Registry() });
      const ids = await reservation(1_000);
      await send([billing(ids, 1_000)], 'protobuf', {}, charging);
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 995_500, held: 0 });
    });

    it('usage missing: the reserved amount', async () => {
      const ids = await reservation(7_000);
      await send([billing(ids, 7_000, { [ATTR_TOLLGATE_USAGE_SOURCE]: 'missing', [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: undefined, [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: undefined })], 'json');
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 993_000, held: 0 });
    });

    it('upstream_error without a 2xx: nothing', async () => {
      const ids = await reservation(7_000);
      const span = billing(ids, 7_000, {
        [ATTR_TOLLGATE_OUTCOME]: 'upstream_error',
        [ATTR_TOLLGATE_USAGE_SOURCE]: 'missing',
        [ATTR_HTTP_RESPONSE_STATUS_CODE]: 503,
        [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: undefined,
        [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: undefined,
      });
      await send([span]);
      expect(await balance(ids.accountId)).to.deep.equal({ balance: OPENING, held: 0 });
    });
  });

  describe('idempotence', () => {
    it('the same span delivered twice changes nothing the second time', async () => {
      const ids = await reservation(10_000);
      const span = billing(ids, 10_000);
      await send([span]);
      const duplicatesBefore = await counter(METRIC_SETTLEMENTS, { result: 'duplicate' });
      const run = await send([span], 'json');
      expect(run.warnings).to.deep.equal([]); // a duplicate is accepted, not rejected
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 995_500, held: 0 });
      expect(await counter(METRIC_SETTLEMENTS, { result: 'duplicate' })).to.equal(duplicatesBefore + 1);
    });

    it('the same span twice in one request settles once', async () => {
      const ids = await reservation(10_000);
      const duplicatesBefore = await counter(METRIC_SETTLEMENTS, { result: 'duplicate' });
      await send([billing(ids, 10_000), billing(ids, 10_000)], 'protobuf', { processor: 'batch' });
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 995_500, held: 0 });
      expect(await counter(METRIC_SETTLEMENTS, { result: 'duplicate' })).to.equal(duplicatesBefore + 1);
    });
  });

  describe('rejects, with a partial success the exporter reads', () => {
    for (const encoding of ['protobuf', 'json'] as const) {
      it(`an unknown reservation (${encoding})`, async () => {
        const run = await send([billing({ accountId: 'nobody', reservationId: randomUUID() }, 10)], encoding);
        expect(run.warnings).to.have.length(1);
        expect(run.warnings[0]).to.contain('Received Partial Success response').and.contain('"rejectedSpans":').and.contain('is unknown');
      });
    }

    it('a span naming another account: nothing changes for either', async () => {
      const victim = await reservation(10_000);
      const other = await reservation(10_000);
      const before = await counter(METRIC_SETTLEMENTS, { result: 'account_mismatch' });
      const run = await send([billing({ accountId: other.accountId, reservationId: victim.reservationId }, 10_000)]);
      expect(run.warnings[0]).to.contain('does not belong to account');
      expect(await balance(victim.accountId)).to.deep.equal({ balance: OPENING, held: 10_000 });
      expect(await balance(other.accountId)).to.deep.equal({ balance: OPENING, held: 10_000 });
      expect(await counter(METRIC_SETTLEMENTS, { result: 'account_mismatch' })).to.equal(before + 1);
    });

    for (const encoding of ['protobuf', 'json'] as const) {
      it(`an invalid billing span, while the valid one beside it settles and other spans are ignored (${encoding})`, async () => {
        const good = await reservation(10_000);
        const bad = await reservation(10_000);
        const before = await counter(METRIC_SETTLEMENTS, { result: 'invalid' });
        const run = await send(
          [billing(good, 10_000), billing(bad, 10_000, { [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: -1 }), { 'http.route': '/health' }],
          encoding,
          { processor: 'batch' },
        );
        expect(run.warnings[0]).to.contain('gen_ai.usage.output_tokens must be a non-negative integer, got -1');
        expect(await balance(good.accountId)).to.deep.equal({ balance: 995_500, held: 0 });
        expect(await balance(bad.accountId)).to.deep.equal({ balance: OPENING, held: 10_000 });
        expect(await counter(METRIC_SETTLEMENTS, { result: 'invalid' })).to.equal(before + 1);
      });
    }

    it('an unknown pricing version: never priced from another table; the sweeper charges the reservation', async () => {
      const ids = await reservation(10_000, 60);
      const before = await counter(METRIC_SETTLEMENTS, { result: 'unknown_pricing_version' });
      const run = await send([billing(ids, 10_000, { [ATTR_TOLLGATE_PRICING_VERSION]: '0123456789abcdef' })]);
      expect(run.warnings[0]).to.contain('pricing version 0123456789abcdef is not one settlement was given');
      expect(await counter(METRIC_SETTLEMENTS, { result: 'unknown_pricing_version' })).to.equal(before + 1);
      expect(await balance(ids.accountId)).to.deep.equal({ balance: OPENING, held: 10_000 });
      // Past its TTL the sweeper settles it at the reserved amount: never an under-charge.
      const sweeper = startSweeper({ ledger, registry, intervalMs: 3_600_000, now: () => new Date(Date.now() + 120_000) });
      try {
        expect(await sweeper.sweep()).to.be.at.least(1);
      } finally {
        await sweeper.stop();
      }
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 990_000, held: 0 });
    });
  });

  describe('the sweeper', () => {
    it('expires a reservation past its TTL, and a late span corrects it to the real cost', async () => {
      const ids = await reservation(10_000, 60);
      const expiredBefore = await counter(METRIC_SETTLEMENTS, { result: 'expired' });
      const sweeper = startSweeper({ ledger, registry, intervalMs: 3_600_000, now: () => new Date(Date.now() + 120_000) });
      try {
        expect(await sweeper.sweep()).to.be.at.least(1);
      } finally {
        await sweeper.stop();
      }
      expect(await counter(METRIC_SETTLEMENTS, { result: 'expired' })).to.be.at.least(expiredBefore + 1);
      expect(await counter(METRIC_OPEN_RESERVATIONS)).to.equal(await ledger.openReservations());
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 990_000, held: 0 });
      const correctedBefore = await counter(METRIC_SETTLEMENTS, { result: 'corrected' });
      await send([billing(ids, 10_000)]);
      // Charged 10,000 at expiry, corrected to the real 4,500.
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 995_500, held: 0 });
      expect(await counter(METRIC_SETTLEMENTS, { result: 'corrected' })).to.equal(correctedBefore + 1);
    });

    it('runs on its timer until stopped', async () => {
      const ids = await reservation(10_000, 60);
      const sweeper = startSweeper({ ledger, registry, intervalMs: 20, now: () => new Date(Date.now() + 120_000) });
      try {
        for (let i = 0; i < 100 && (await balance(ids.accountId)).held > 0; i++) await new Promise((r) => setTimeout(r, 20));
      } finally {
        await sweeper.stop();
      }
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 990_000, held: 0 });
    });
  });

  describe('answers', () => {
    const auth = { authorization: `Bearer ${TOKEN}` };
    const proto = { ...auth, 'content-type': 'application/x-protobuf' };

    it('a full success with a body that parses in the request encoding', async () => {
      const empty = await post(url, Buffer.alloc(0), proto);
      expect(empty.status).to.equal(200);
      expect(empty.headers['content-type']).to.equal('application/x-protobuf');
      expect(empty.body).to.have.length(0); // an ExportTraceServiceResponse with nothing set
      const json = await post(url, '{"resourceSpans":[]}', auth);
      expect(json.status).to.equal(200);
      expect(json.headers['content-type']).to.equal('application/json');
      expect(JSON.parse(json.body.toString())).to.deep.equal({});
    });

    const malformed: Array<[string, Record<string, string>, Buffer | string]> = [
      ['protobuf garbage', proto, Buffer.from('\xff\xff\xff\xff garbage', 'latin1')],
      ['bad JSON', auth, '{"resourceSpans": [{'],
      ['bad gzip', { ...proto, 'content-encoding': 'gzip' }, Buffer.from('not gzip at all')],
      ['truncated gzip', { ...auth, 'content-encoding': 'gzip' }, gzipSync('{"resourceSpans":[]}').subarray(0, 12)],
    ];
    for (const [name, headers, body] of malformed) {
      it(`400 for ${name}, with a Status body`, async () => {
        const response = await post(url, body, headers);
        expect(response.status).to.equal(400);
        const message =
          response.headers['content-type'] === 'application/json'
            ? JSON.parse(response.body.toString()).message
            : (Status.toObject(Status.decode(response.body)) as { message: string }).message;
        expect(message).to.match(/^malformed/);
      });
    }

    it('413 for a gzip bomb, refused as soon as it inflates past the limit', async () => {
      const small = await start({ maxBodyBytes: 64 * 1024, registry: new Registry() });
      const bomb = gzipSync(Buffer.alloc(16 * 1024 * 1024)); // 16 MiB of zeros in ~16 KiB
      expect(bomb.length).to.be.below(64 * 1024);
      const response = await post(small, bomb, { ...proto, 'content-encoding': 'gzip' });
      expect(response.status).to.equal(413);
      const tooLong = await post(small, Buffer.alloc(65 * 1024), proto);
      expect(tooLong.status).to.equal(413);
    });

    it('415 for a content type or encoding it does not speak', async () => {
      expect((await post(url, 'x', { ...auth, 'content-type': 'text/plain' })).status).to.equal(415);
      expect((await post(url, 'x', { ...proto, 'content-encoding': 'br' })).status).to.equal(415);
    });

    it('401 without a known bearer token; either rotated token is accepted', async () => {
      const ids = await reservation(10_000);
      const wrong = await exportSpans(url, 'protobuf', [billing(ids, 10_000)], { token: 'wrong' });
      expect(wrong.results[0]!.code).to.equal(ExportResultCode.FAILED);
      expect((await post(url, Buffer.alloc(0), { 'content-type': 'application/x-protobuf' })).status).to.equal(401);
      expect((await post(url, Buffer.alloc(0), { ...proto, authorization: 'Basic c2V0dGxl' })).status).to.equal(401);
      expect(await balance(ids.accountId)).to.deep.equal({ balance: OPENING, held: 10_000 });
      await send([billing(ids, 10_000)], 'protobuf', { token: ROTATED });
      expect(await balance(ids.accountId)).to.deep.equal({ balance: 995_500, held: 0 });
    });

    it('503 with Retry-After when the ledger is down, so that the Collector retries', async () => {
      const closed = await openLedger('memory://');
      await closed.close();
      const down = await start({ ledger: closed, registry: new Registry(), retryAfterSeconds: 7 });
      const ids = { accountId: 'a', reservationId: randomUUID() };
      const body = JSON.stringify({
        resourceSpans: [
          {
            scopeSpans: [
              {
                spans: [
                  {
                    spanId: '0102030405060708',
                    endTimeUnixNano: String(BigInt(Date.now()) * 1_000_000n),
                    attributes: Object.entries(billing(ids, 10)).map(([key, value]) => ({
                      key,
                      value: typeof value === 'string' ? { stringValue: value } : { intValue: String(value) },
                    })),
                  },
                ],
              },
            ],
          },
        ],
      });
      const response = await post(down, body, auth);
      expect(response.status).to.equal(503);
      expect(response.headers['retry-after']).to.equal('7');
      expect(JSON.parse(response.body.toString()).message).to.contain('ledger is unavailable');
    });

    it('Prometheus text on GET /metrics', async () => {
      const response = await fetch(url.replace('/v1/traces', '/metrics'));
      expect(response.status).to.equal(200);
      const text = await response.text();
      expect(text).to.match(new RegExp(`^${METRIC_SETTLEMENTS}\\{result="settled"\\} \\d+$`, 'm'));
      expect(text).to.contain(`${METRIC_SETTLEMENT_LAG}_bucket`);
      expect(text).to.match(new RegExp(`^${METRIC_SETTLED_CREDITS} \\d`, 'm'));
    });
  });

  describe('options', () => {
    const cases: Array<[string, Partial<SettlementServerOptions>, RegExp]> = [
      ['no tokens', { tokens: [] }, /option tokens must be at least one token/],
      ['an empty token', { tokens: [''] }, /option tokens must be an array of non-empty strings/],
      // A bearer header's token has no whitespace: this one refused its Collector with 401 forever.
      ['a token with a space', { tokens: ['tok1', ' tok2'] }, /option tokens must be an array of non-empty strings without whitespace, got an array of 2/],
      ['tokens with auth none', { auth: 'none' }, /option tokens must be empty with auth 'none'/],
      ['a bad auth', { auth: 'basic' as never }, /option auth must be 'bearer' or 'none', got "basic"/],
      ['a bad policy', { overrunPolicy: 'maybe' as never }, /option overrunPolicy must be 'cap' or 'charge', got "maybe"/],
      ['no pricing', { pricing: [] }, /option pricing must be a non-empty array/],
      ['a bad body limit', { maxBodyBytes: -1 }, /option maxBodyBytes must be a positive integer, got -1/],
    ];
    for (const [name, options, message] of cases) {
      it(`refuses ${name}`, () => {
        expect(() => createSettlementServer({ ledger, pricing: [PRICING], tokens: [TOKEN], ...options })).to.throw(SettlementOptionError, message);
      });
    }

    it("allows no authentication only when asked (auth: 'none')", async () => {
      const open = await start({ auth: 'none', tokens: [], registry: new Registry() });
      expect((await post(open, Buffer.alloc(0), { 'content-type': 'application/x-protobuf' })).status).to.equal(200);
    });
  });
});
