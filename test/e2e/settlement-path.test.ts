/**
 * The whole loop without a Collector: official SDKs → gateway → billing spans over OTLP/HTTP →
 * settlement → ledger, with a traffic mix whose every charge is worked out by hand. In one process
 * (the embedded default) and across processes on PostgreSQL; and a settlement process killed
 * between receiving a batch and committing it.
 */
import { expect } from 'chai';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import pg from 'pg';
import { parseServeArgs, startGatewayServer, type RunningGateway } from '../../cli/serve.js';
import { openLedger } from '../../ledger/index.js';
import { defaultPricing } from '../../plugin/default-pricing.js';
import { exportSpans, billingAttributes } from '../collector/helpers.js';
import { createSchema, DATABASE_URL } from '../ledger/databases.js';
import { TEST_PRICING, writeTestPricingFile } from '../support/pricing.js';
import { anthropicStream, chatStream, JSON_HEADERS, responsesStream, SSE_HEADERS } from '../support/provider-streams.js';
import { ledgerUrl as processLedgerUrl, startTollgate, type TollgateProcess } from '../support/processes.js';
import { startUpstream, type ReceivedRequest, type Reply, type Upstream } from '../support/upstream.js';
import { splitRandomly } from '../support/chunking.js';
import { checkBalances, waitUntilSettled, type Expectation } from '../support/settlement.js';

const TEXT = 'Every micro-credit accounted for. ' + 'Streaming text. '.repeat(40);
const INITIAL = 10_000_000; // 10 credits per account

/**
 * What the fake upstream answers, chosen by the account's upstream key marker in the request:
 * the test puts the scenario name into the request's `metadata.scenario`.
 */
function scenarioReply(request: ReceivedRequest): Reply {
  const scenario = (JSON.parse(request.body.toString()) as { metadata?: { scenario?: string } }).metadata?.scenario;
  const stream = (body: Buffer, extra: Partial<Reply> = {}): Reply => ({ headers: SSE_HEADERS, chunks: splitRandomly(body, 3, 20), ...extra });
  switch (scenario) {
    case 'completed':
      return stream(responsesStream(TEXT, { input: 1200, cached: 300, output: 450, reasoning: 100 }));
    case 'incomplete':
      return stream(responsesStream(TEXT, { input: 100, output: 1000 }, 'incomplete'));
    case 'failed':
      return stream(responsesStream('', { input: 100, output: 0 }, 'failed'));
    case 'overrun':
      return stream(responsesStream(TEXT, { input: 100, output: 5000 }));
    case 'cancelled':
      // Slow enough for the client to leave before the terminal event.
      return stream(responsesStream(TEXT, { input: 100, output: 200 }), { delayMs: 50 });
    case 'upstream_error':
      return { status: 500, headers: JSON_HEADERS, chunks: [Buffer.from('{"error":{"message":"boom","type":"server_error"}}')] };
    default:
      // Chat without include_usage, and Anthropic, decided by path.
      return request.url.startsWith('/v1/messages')
        ? stream(anthropicStream(TEXT, { input: 1600, cached: 300, cacheCreation: 100, output: 250 }))
        : stream(chatStream(TEXT, undefined));
  }
}

/** Drives the mix through the gateway with the official SDKs; one account per kind of request. */
async function driveTraffic(gatewayUrl: string, keys: Record<string, string>): Promise<Expectation[]> {
  const openai = (account: string) => new OpenAI({ baseURL: `${gatewayUrl}/v1`, apiKey: keys[account], maxRetries: 0 });
  const drain = async (stream: AsyncIterable<unknown>) => {
    for await (const _ of stream) void _;
  };
  const responses = (account: string, scenario: string, maxOutput = 1000) =>
    openai(account).responses.create({ model: 'gpt-4.1', input: 'hi', stream: true, max_output_tokens: maxOutput, metadata: { scenario } });

  await Promise.all([
    ...[1, 2, 3].map(async () => drain(await responses('completed', 'completed'))),
    drain(await responses('incomplete', 'incomplete', 1000)),
    drain(await responses('failed', 'failed')),
    drain(await responses('overrun', 'overrun', 16)),
    (async () => {
      const controller = new AbortController();
      const stream = await openai('cancelled').responses.create(
        { model: 'gpt-4.1', input: 'hi', stream: true, max_output_tokens: 1000, metadata: { scenario: 'cancelled' } },
        { signal: controller.signal },
      );
      let events = 0;
      try {
        for await (const _ of stream) if (++events === 3) controller.abort();
      } catch {
        // the abort surfaces as an error in the iterator
      }
    })(),
    openai('upstream_error')
      .responses.create({ model: 'gpt-4.1', input: 'hi', metadata: { scenario: 'upstream_error' } })
      .catch(() => undefined),
    drain(
      await openai('missing').chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }),
    ),
    new Anthropic({ baseURL: gatewayUrl, apiKey: keys.anthropic, maxRetries: 0 })
      .messages.stream({ model: 'claude-sonnet-4-6', max_tokens: 1024, messages: [{ role: 'user', content: 'hi' }] })
      .finalMessage(),
  ]);

  return [
    // non-cached 900 × 2 + cached 300 × 0.5 + output 450 × 8 = 1800 + 150 + 3600 = 5550, three times
    { account: 'completed', charges: [5550, 5550, 5550] },
    // 100 × 2 + 1000 × 8 = 8200 (the reservation holds at least 1000 × 8 + the body's bytes × 2)
    { account: 'incomplete', charges: [8200] },
    // 100 × 2 = 200
    { account: 'failed', charges: [200] },
    // 100 × 2 + 5000 × 8 = 40,200 > the reservation (16 output tokens): capped at the reservation
    { account: 'overrun', charges: ['reserved'] },
    // left before the terminal event: no usage, the reservation is charged
    { account: 'cancelled', charges: ['reserved'] },
    // the upstream answered 500: nothing was served, nothing is charged
    { account: 'upstream_error', charges: [0] },
    // chat without include_usage: no usage, the reservation is charged
    { account: 'missing', charges: ['reserved'] },
    // 1200 × 3 + 300 × 0.3 + 100 × 3.75 + 250 × 15 = 3600 + 90 + 375 + 3750 = 7815
    { account: 'anthropic', charges: [7815] },
  ];
}

const ACCOUNTS = ['completed', 'incomplete', 'failed', 'overrun', 'cancelled', 'upstream_error', 'missing', 'anthropic'];

const seedAccounts = () => ACCOUNTS.map((id) => ({ id, key: `tg-e2e-${id}`, amount: INITIAL }));
const keysOf = () => Object.fromEntries(ACCOUNTS.map((id) => [id, `tg-e2e-${id}`]));

describe('end to end: SDK → gateway → settlement → ledger', function () {
  this.timeout(120_000);
  let upstream: Upstream;

  before(async () => {
    upstream = await startUpstream();
    upstream.reply(scenarioReply);
  });
  after(() => upstream.close());

  it('in one process on the embedded ledger: every balance exact, every reservation settled once', async () => {
    let gateway: RunningGateway | undefined;
    try {
      gateway = await startGatewayServer({
        ...parseServeArgs(['--port', '0', '--ledger', 'memory://', '--pricing', writeTestPricingFile()], {}),
        openaiUpstream: upstream.url,
        anthropicUpstream: upstream.url,
        accounts: seedAccounts(),
      });
      const expectations = await driveTraffic(gateway.url, keysOf());
      await waitUntilSettled(gateway.ledger);
      await checkBalances(gateway.ledger, expectations, INITIAL);
      const overrun = (await gateway.ledger.statement('overrun')).find((line) => line.kind === 'overrun');
      expect(overrun?.overrun).to.be.greaterThan(0);
    } finally {
      await gateway?.close();
    }
  });

  describe('across processes on PostgreSQL', function () {
    const children: TollgateProcess[] = [];
    let schema: Awaited<ReturnType<typeof createSchema>> | undefined;
    let ledgerUrl = '';

    before(async function () {
      if (DATABASE_URL === undefined) {
        console.log('    (skipped: set DATABASE_URL to run the cross-process settlement tests on PostgreSQL)');
        this.skip();
      }
      schema = await createSchema(DATABASE_URL);
      ledgerUrl = processLedgerUrl(DATABASE_URL, schema.config());
    });
    afterEach(async () => {
      for (const child of children.splice(0)) {
        await child.stop('SIGKILL');
        child.cleanup();
      }
    });
    after(async () => {
      await schema?.drop();
    });

    it('gateway and settlement as separate processes: every balance exact', async () => {
      const pricing = writeTestPricingFile();
      const settle = await startTollgate('settle', ['--port', '0', '--ledger', ledgerUrl, '--pricing', pricing], {
        // Rotation: settlement holds the old and the new key; the gateway signs with the new one.
        env: { TOLLGATE_SETTLEMENT_TOKENS: 'settle-token', TOLLGATE_SPAN_SIGNING_KEYS: 'old:old-secret-0123456789,new:new-secret-0123456789' },
      });
      children.push(settle);
      const serve = await startTollgate(
        'serve',
        [
          '--port',
          '0',
          '--ledger',
          ledgerUrl,
          '--pricing',
          pricing,
          '--openai-upstream',
          upstream.url,
          '--anthropic-upstream',
          upstream.url,
          '--otlp-endpoint',
          `${settle.url}/v1/traces`,
          ...seedAccounts().flatMap(({ id, key }) => ['--account', `${id}:${key}:${INITIAL / 1e6}`]),
        ],
        { env: { TOLLGATE_OTLP_TOKEN: 'settle-token', TOLLGATE_SPAN_SIGNING_KEY: 'new:new-secret-0123456789' } },
      );
      children.push(serve);
      const expectations = await driveTraffic(serve.url, keysOf());
      const ledger = await openLedger(ledgerUrl);
      try {
        await waitUntilSettled(ledger);
        await checkBalances(ledger, expectations, INITIAL);
      } finally {
        await ledger.close();
      }
    });

    it('settle with --pricing files still knows the built-in table, for gateways started without --pricing', async () => {
      const ledger = await openLedger(ledgerUrl);
      try {
        await ledger.createAccount('builtin', INITIAL);
        const reservation = { reservationId: `builtin-${Date.now()}`, accountId: 'builtin', amount: 100_000, pricingVersion: defaultPricing().version };
        expect(await ledger.reserve({ ...reservation, ttlSeconds: 600, provider: 'openai', model: 'gpt-4o' })).to.include({ ok: true });
        const settle = await startTollgate('settle', ['--port', '0', '--ledger', ledgerUrl, '--pricing', writeTestPricingFile()], {
          env: { TOLLGATE_SETTLEMENT_TOKENS: 'builtin-token' },
        });
        children.push(settle);
        await exportSpans(`${settle.url}/v1/traces`, 'protobuf', [billingAttributes(reservation)], { token: 'builtin-token' });
        // gpt-4o in the built-in table: 1000 input × 2.5 + 200 output × 10 = 4,500 µcr
        expect(await ledger.account('builtin')).to.deep.include({ balance: INITIAL - 4_500, held: 0 });
      } finally {
        await ledger.close();
      }
    });

    it('settlement killed between receiving a batch and committing it: after a resend, charged once, nothing lost', async () => {
      const ledger = await openLedger(ledgerUrl);
      const blocker = new pg.Client({ connectionString: ledgerUrl });
      await blocker.connect();
      try {
        await ledger.createAccount('crash', INITIAL);
        const reservations = [];
        for (let i = 0; i < 5; i++) {
          const reservationId = `crash-${i}-${Date.now()}`;
          expect(await ledger.reserve({ reservationId, accountId: 'crash', amount: 100_000, ttlSeconds: 600, provider: 'openai', model: 'gpt-4.1', pricingVersion: TEST_PRICING.version })).to.include({ ok: true });
          reservations.push({ reservationId, accountId: 'crash', amount: 100_000, pricingVersion: TEST_PRICING.version });
        }
        // Each span: 1000 input × 2 + 200 output × 8 = 3,600 µcr (gpt-4.1 in the test table)
        const spans = reservations.map((reservation) => billingAttributes(reservation, { 'gen_ai.request.model': 'gpt-4.1' }));
        const settle = await startTollgate('settle', ['--port', '0', '--ledger', ledgerUrl, '--pricing', writeTestPricingFile()], {
          env: { TOLLGATE_SETTLEMENT_TOKENS: 'crash-token' },
        });
        children.push(settle);

        // Hold the account row: the settlement transaction gets as far as it can and waits on it.
        await blocker.query('BEGIN');
        await blocker.query(`SELECT 1 FROM accounts WHERE id = 'crash' FOR UPDATE`);
        const sent = exportSpans(`${settle.url}/v1/traces`, 'protobuf', spans, { token: 'crash-token', processor: 'batch' });
        await waitFor(async () => (await waitingOnLocks(blocker)) > 0, 10_000);
        await settle.stop('SIGKILL');
        await blocker.query('ROLLBACK');
        await sent;
        // Nothing half-applied: the killed transaction rolled back with its connection.
        await waitFor(async () => (await ledger.openReservations()) === 5, 10_000);
        expect(await ledger.account('crash')).to.deep.include({ balance: INITIAL, held: 500_000 });

        // The Collector resends what was not acknowledged; here, the same spans again, twice.
        const restarted = await startTollgate('settle', ['--port', '0', '--ledger', ledgerUrl, '--pricing', writeTestPricingFile()], {
          env: { TOLLGATE_SETTLEMENT_TOKENS: 'crash-token' },
        });
        children.push(restarted);
        for (let i = 0; i < 2; i++) {
          const run = await exportSpans(`${restarted.url}/v1/traces`, 'protobuf', spans, { token: 'crash-token', processor: 'batch' });
          expect(run.results.every((result) => result.code === 0)).to.equal(true);
        }
        expect(await ledger.openReservations()).to.equal(0);
        // 5 × 3,600 = 18,000 µcr, once
        expect(await ledger.account('crash')).to.deep.equal({ accountId: 'crash', balance: INITIAL - 18_000, held: 0, available: INITIAL - 18_000 });
        expect((await ledger.statement('crash')).filter((line) => line.kind === 'charge')).to.have.length(5);
      } finally {
        await blocker.end();
        await ledger.close();
      }
    });
  });
});

async function waitFor(condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Backends waiting on a lock (the settlement transaction blocked behind the test's row lock). */
async function waitingOnLocks(client: pg.Client): Promise<number> {
  const { rows } = await client.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'`);
  return rows[0].n as number;
}
