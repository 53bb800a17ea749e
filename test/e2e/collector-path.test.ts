/**
 * The production billing path, end to end, with real processes only:
 *
 *   official openai SDK ──► `tollgate serve --otlp-endpoint` (gateway) ──► fake LLM upstream
 *                               │ billing spans, OTLP/HTTP + bearer token
 *                               ▼
 *                       otelcol-tollgate (otel-collector.yaml, persistent queue)
 *                               │ OTLP/HTTP + settlement token
 *                               ▼
 *                       `tollgate settle` ──► PostgreSQL ledger (a schema of its own per test)
 *
 * Every test ends with the ledger checked to the micro-credit, per reservation: what each
 * request reserved and was charged is worked out here from the request the upstream received and
 * the usage it reported, by the settlement rules (DESIGN.md): charge min(cost, reserved) under
 * the default 'cap' policy, the reserved amount when the usage is missing, 0 for an upstream
 * error without a 2xx; one charge entry per reservation, nothing left open.
 *
 * Needs DATABASE_URL (PostgreSQL) and the Collector binary (collector/otelcol/build.sh); skipped
 * with a message otherwise.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import OpenAI from 'openai';
import { Registry } from 'prom-client';
import { createSettlementServer, startSweeper, type Sweeper } from '../../collector/index.js';
import { openPostgresLedger } from '../../ledger/index.js';
import type { Ledger } from '../../ledger/types.js';
import { defaultPricing } from '../../plugin/default-pricing.js';
import { createSchema } from '../ledger/databases.js';
import { collectorBinary, collectorBinaryPath, freePort, parseSample, startCollector, type RunningCollector } from '../support/otelcol.js';
import { ledgerUrl, startTollgate, type TollgateProcess } from '../support/processes.js';
import { chatStream, responsesStream, SSE_HEADERS, JSON_HEADERS } from '../support/provider-streams.js';
import { startUpstream, type ReceivedRequest, type Reply, type Upstream } from '../support/upstream.js';

const DATABASE_URL = process.env.DATABASE_URL;
const COLLECTOR_TOKEN = 'e2e-collector-token';
const SETTLEMENT_TOKEN = 'e2e-settlement-token';
const BILLING_EXPORTER = { exporter: 'otlp_http/settlement' };

// Priced by the built-in table (plugin/default-pricing.ts), which both `serve` and `settle` use
// without --pricing. Its gpt-4.1 costs whole micro-credits per token — input 2 (cached input 0.5,
// cache write falls back to 2), output 8 (reasoning falls back to 8), output limit 32,768 — so
// every amount below is exact integer arithmetic; the `before` hook checks the table still says so.
const MODEL = 'gpt-4.1';
const INPUT_MICROS = 2;
const OUTPUT_MICROS = 8;
const MODEL_OUTPUT_LIMIT = 32_768;
const CREDITS = 1_000; // per account
const MICROS_PER_CREDIT = 1_000_000;

/** What each kind of request makes the upstream do, and what it should cost. */
const KINDS = {
  // Streamed to the end: charged its cost, the rest released.
  completed: { usage: { input: 40, output: 300 }, outcome: 'completed', maxOutput: 1_000 },
  // max_output_tokens 16 reserves little; the upstream reports 5,000 output tokens: cost > reserved.
  overrun: { usage: { input: 40, output: 5_000 }, outcome: 'completed', maxOutput: 16 },
  // The client aborts at the first event: no usage yet, charged the reserved amount.
  cancelled: { usage: undefined, outcome: 'cancelled', maxOutput: 1_000 },
  // A Chat Completions stream without stream_options.include_usage: no usage anywhere, charged the
  // reserved amount — with no max_completion_tokens, reserved for the model's output limit.
  usage_missing: { usage: undefined, outcome: 'completed', maxOutput: undefined },
  // A 500 from the upstream: never served, costs 0.
  upstream_error: { usage: undefined, outcome: 'upstream_error', maxOutput: 1_000 },
  // A non-streamed Chat Completion, with its usage in the JSON body.
  chat_json: { usage: { input: 30, output: 20 }, outcome: 'completed', maxOutput: 100 },
} as const;
type Kind = keyof typeof KINDS;
const ALL_KINDS = Object.keys(KINDS) as Kind[];

/** One request the upstream received, as the tag in its prompt names it. */
interface Served {
  account: string;
  kind: Kind;
  /** The body's length: the gateway forwards it byte for byte and reserves input tokens ≤ its bytes. */
  bodyBytes: number;
}

/** The ledger's view of one reservation, by the rules. */
interface Expected {
  reserved: number;
  charged: number;
  /** Cost above the reservation, recorded (and, under 'cap', not charged). */
  overrun: number;
  outcome: string;
}

function expectedOf(served: Served): Expected {
  const spec = KINDS[served.kind];
  const outputBound = Math.min(spec.maxOutput ?? MODEL_OUTPUT_LIMIT, MODEL_OUTPUT_LIMIT);
  const reserved = served.bodyBytes * INPUT_MICROS + outputBound * OUTPUT_MICROS;
  // An upstream error without a 2xx costs 0; missing usage costs the reservation; else min(cost, reserved).
  const cost = served.kind === 'upstream_error' ? 0 : spec.usage === undefined ? undefined : costOf(spec.usage);
  if (cost === undefined) return { reserved, charged: reserved, overrun: 0, outcome: spec.outcome };
  return { reserved, charged: Math.min(cost, reserved), overrun: Math.max(0, cost - reserved), outcome: spec.outcome };
}

const costOf = (usage: { input: number; output: number }) => usage.input * INPUT_MICROS + usage.output * OUTPUT_MICROS;

// --- the fake upstream: answers each request by the kind named in its prompt --------------------

const TAG = /^tg (\S+) (\S+) \d+$/;
const TEXT = 'Billing spans ride through a real Collector. '.repeat(4);

/** Each SSE event in a write of its own, so that a client can leave after the first. */
const perEvent = (body: Buffer) => body.toString().split(/(?<=\n\n)/).map((event) => Buffer.from(event));

function replyFor(kind: Kind): Reply {
  const usage = KINDS[kind].usage;
  switch (kind) {
    case 'completed':
    case 'overrun':
      return { headers: SSE_HEADERS, chunks: [responsesStream(TEXT, usage!)] };
    case 'cancelled':
      // Slow enough (~60 events × 50 ms) that the client is long gone before the terminal event.
      return { headers: SSE_HEADERS, chunks: perEvent(responsesStream(TEXT.repeat(2), { input: 40, output: 300 })), delayMs: 50 };
    case 'usage_missing':
      return { headers: SSE_HEADERS, chunks: [chatStream(TEXT, undefined)] };
    case 'upstream_error':
      return { status: 500, headers: JSON_HEADERS, chunks: [Buffer.from('{"error":{"message":"upstream failed","type":"server_error"}}')] };
    case 'chat_json':
      return {
        headers: JSON_HEADERS,
        chunks: [
          Buffer.from(
            JSON.stringify({
              id: 'chatcmpl-e2e',
              object: 'chat.completion',
              created: 1764000000,
              model: 'gpt-4.1-2025-04-14',
              choices: [{ index: 0, message: { role: 'assistant', content: 'ok', refusal: null }, finish_reason: 'stop', logprobs: null }],
              usage: { prompt_tokens: usage!.input, completion_tokens: usage!.output, total_tokens: usage!.input + usage!.output },
            }),
          ),
        ],
      };
  }
}

function serve(upstream: Upstream, served: Served[]): void {
  upstream.reply((request: ReceivedRequest) => {
    const body = JSON.parse(request.body.toString()) as { input?: string; messages?: Array<{ content: string }> };
    const match = TAG.exec(body.input ?? body.messages?.[0]?.content ?? '');
    if (!match) return { status: 400, chunks: [Buffer.from('untagged request')] };
    const kind = match[2] as Kind;
    served.push({ account: match[1]!, kind, bodyBytes: request.body.length });
    return replyFor(kind);
  });
}

// --- clients: the official SDK -------------------------------------------------------------------

interface Client {
  account: string;
  sdk: OpenAI;
  sent: number;
}

function client(gatewayUrl: string, account: string): Client {
  // maxRetries 0: a retried 500 would be a second reservation this test did not plan for.
  return { account, sdk: new OpenAI({ apiKey: keyOf(account), baseURL: `${gatewayUrl}/v1`, maxRetries: 0, timeout: 60_000 }), sent: 0 };
}

const keyOf = (account: string) => `tg-e2e-key-${account}`;

/** One request of `kind`, as an application would make it; resolves when the client is done with it. */
async function send(c: Client, kind: Kind): Promise<void> {
  const tag = `tg ${c.account} ${kind} ${c.sent++}`;
  const maxOutput = KINDS[kind].maxOutput;
  switch (kind) {
    case 'completed':
    case 'overrun': {
      const stream = await c.sdk.responses.create({ model: MODEL, input: tag, stream: true, max_output_tokens: maxOutput });
      for await (const _event of stream);
      return;
    }
    case 'cancelled': {
      const stream = await c.sdk.responses.create({ model: MODEL, input: tag, stream: true, max_output_tokens: maxOutput });
      // Leaving the loop aborts the request: the client hangs up mid-stream.
      for await (const _event of stream) break;
      return;
    }
    case 'usage_missing': {
      const stream = await c.sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: tag }], stream: true });
      for await (const _chunk of stream);
      return;
    }
    case 'upstream_error': {
      const error = await c.sdk.responses.create({ model: MODEL, input: tag, max_output_tokens: maxOutput }).then(
        () => undefined,
        (e: unknown) => e,
      );
      if (!(error instanceof OpenAI.APIError) || error.status !== 500) throw new Error(`expected a 500, got ${String(error)}`);
      return;
    }
    case 'chat_json': {
      const completion = await c.sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: tag }], max_completion_tokens: maxOutput });
      if (completion.usage?.completion_tokens !== KINDS.chat_json.usage.output) throw new Error('the upstream JSON did not come through');
      return;
    }
  }
}

/** `perClient` requests per client, cycling through `kinds`, `inFlight` at a time per client, all clients at once. */
async function burst(clients: Client[], perClient: number, kinds: Kind[] = ALL_KINDS, inFlight = 2): Promise<void> {
  await Promise.all(
    clients.map(async (c, offset) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (next < perClient) {
            const i = next++;
            await send(c, kinds[(i + offset) % kinds.length]!);
          }
        }),
      );
    }),
  );
}

/** Clients sending mixed requests in a loop until stop(); an unexpected error ends its loop and fails stop(). */
function traffic(clients: Client[], pauseMs = 20): { stop(): Promise<void> } {
  let running = true;
  let failure: unknown;
  const loops = clients.map(async (c, offset) => {
    try {
      for (let i = offset; running; i++) {
        await send(c, ALL_KINDS[i % ALL_KINDS.length]!);
        await sleep(pauseMs);
      }
    } catch (error) {
      failure ??= error; // held for stop(): a rejection nobody awaits yet would crash the run
    }
  });
  return {
    stop: async () => {
      running = false;
      await Promise.all(loops);
      if (failure !== undefined) throw failure;
    },
  };
}

// --- waiting and checking --------------------------------------------------------------------------

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(250);
  }
}

/** A sample from a Prometheus text endpoint (0 when absent). */
async function scrape(url: string, name: string, labels: Record<string, string> = {}): Promise<number> {
  return parseSample(await (await fetch(url)).text(), name, labels) ?? 0;
}

/** Per reservation of an account: what it reserved, what its entries charged in all, how it ended. */
interface Settled {
  reservationId: string;
  reserved: number;
  charged: number;
  /** Entry kinds of the reservation, in journal order, e.g. ['charge', 'overrun']. */
  entries: string[];
  /** The outcome its first charge entry recorded ('expired' when the sweeper charged it). */
  outcome: string;
  /** The outcome the span brought, when a correction followed the sweeper's charge. */
  correctedTo: string | undefined;
  /** Cost above the reservation, from its overrun entry. */
  overrun: number;
}

async function reservationsOf(ledger: Ledger, account: string): Promise<Settled[]> {
  const byId = new Map<string, Settled>();
  for (const line of await ledger.statement(account)) {
    if (line.reservationId === null) continue; // the opening top-up
    let r = byId.get(line.reservationId);
    if (!r) {
      r = { reservationId: line.reservationId, reserved: line.reserved!, charged: 0, entries: [], outcome: String(line.outcome), correctedTo: undefined, overrun: 0 };
      byId.set(line.reservationId, r);
    }
    r.entries.push(line.kind);
    r.charged -= line.amount;
    r.overrun += line.overrun;
    if (line.kind === 'correction') r.correctedTo = String(line.outcome);
  }
  return [...byId.values()];
}

const servedBy = (served: Served[], account: string) => served.filter((s) => s.account === account);

/** Every request of the account closed, each by a charge entry. */
async function isSettled(ledger: Ledger, account: string, requests: number): Promise<boolean> {
  const balance = await ledger.account(account);
  const reservations = await reservationsOf(ledger, account);
  return balance?.held === 0 && reservations.length === requests && reservations.every((r) => r.entries.includes('charge'));
}

const summary = (e: Expected) => `${e.outcome} reserved=${e.reserved} charged=${e.charged} overrun=${e.overrun}`;

/**
 * The account's reservations are exactly the requests it made, each settled once from its span
 * by the rules, and its balance is the opening credits minus those charges. `sweeper`: a span may
 * have come after the TTL, so the sweeper's charge and then a correction are allowed too (the
 * account ends where an on-time settlement would have left it).
 */
async function expectExact(ledger: Ledger, account: string, served: Served[], { sweeper = false } = {}): Promise<void> {
  const allowed = sweeper ? ['charge', 'charge,overrun', 'charge,correction', 'charge,correction,overrun'] : ['charge', 'charge,overrun'];
  const reservations = await reservationsOf(ledger, account);
  // One charge each; an overrun entry (0 under 'cap') beside it when the cost went above.
  for (const r of reservations) expect(r.entries.join(), `entries of reservation ${r.reservationId}`).to.be.oneOf(allowed);
  const actual = reservations.map((r) => summary({ ...r, outcome: r.correctedTo ?? r.outcome })).sort();
  const expected = servedBy(served, account).map(expectedOf);
  expect(actual, `reservations of ${account}`).to.deep.equal(expected.map(summary).sort());
  const charged = expected.reduce((sum, e) => sum + e.charged, 0);
  expect(await ledger.account(account)).to.deep.include({ balance: CREDITS * MICROS_PER_CREDIT - charged, held: 0 });
}

// --- the stack -------------------------------------------------------------------------------------

describe('end to end through a real Collector: openai SDK → gateway → otelcol-tollgate → settlement → PostgreSQL', function () {
  this.timeout(120_000);

  let schema: Awaited<ReturnType<typeof createSchema>>;
  let url: string;
  let ledger: Ledger;
  let upstream: Upstream;
  let served: Served[];
  const processes: TollgateProcess[] = [];
  const collectors: RunningCollector[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  before(function () {
    if (!DATABASE_URL) {
      console.log('    skipping: DATABASE_URL is unset (e.g. postgres://postgres@127.0.0.1:5432/test)');
      this.skip();
    }
    if (!collectorBinary()) {
      console.log(`    skipping: ${collectorBinaryPath} is not built — run collector/otelcol/build.sh`);
      this.skip();
    }
    const price = defaultPricing().price(MODEL, 'openai');
    expect(price, 'the built-in price of gpt-4.1 these tests compute with').to.deep.include({
      input: INPUT_MICROS * MICROS_PER_CREDIT,
      output: OUTPUT_MICROS * MICROS_PER_CREDIT,
      cacheWrite: INPUT_MICROS * MICROS_PER_CREDIT,
      reasoning: OUTPUT_MICROS * MICROS_PER_CREDIT,
      maxOutputTokens: MODEL_OUTPUT_LIMIT,
    });
  });

  beforeEach(async () => {
    schema = await createSchema(DATABASE_URL!);
    url = ledgerUrl(DATABASE_URL!, schema.config());
    ledger = await openPostgresLedger(schema.config({ max: 2 }));
    upstream = await startUpstream();
    served = [];
    serve(upstream, served);
  });

  afterEach(async function () {
    const failed = this.currentTest?.state === 'failed';
    // Gateways were started last: stopping in reverse lets their exporters flush into a Collector still up.
    const stopped = processes.splice(0).reverse();
    for (const p of stopped) await p.stop('SIGTERM', 15_000);
    const collectorsStopped = collectors.splice(0);
    for (const c of collectorsStopped) await c.stop('SIGTERM');
    for (const cleanup of cleanups.splice(0)) await cleanup();
    await upstream.close();
    await ledger.close();
    await schema.drop();
    // Temp dirs go only after every process is down: a restarted Collector shares its predecessor's queue.
    for (const p of stopped) (failed ? console.log(`    log kept: ${p.logFile}`) : p.cleanup());
    for (const c of collectorsStopped) (failed ? console.log(`    Collector log kept: ${c.logFile}`) : c.cleanup());
  });

  /** `tollgate settle` on `port`, with the sweeper the CLI always runs (every 10 s, a 900 s TTL never reached here). */
  async function settlement(port: number): Promise<TollgateProcess> {
    const p = await startTollgate('settle', ['--port', String(port), '--ledger', url], { env: { TOLLGATE_SETTLEMENT_TOKENS: SETTLEMENT_TOKEN } });
    processes.push(p);
    return p;
  }

  /** The Collector, sending to settlement on `settlementPort`; `restartOf` reuses a predecessor's OTLP port and queue. */
  async function collector(settlementPort: number, restartOf?: RunningCollector): Promise<RunningCollector> {
    const c = await startCollector({
      env: {
        TOLLGATE_COLLECTOR_TOKEN: COLLECTOR_TOKEN,
        TOLLGATE_SETTLEMENT_TOKEN: SETTLEMENT_TOKEN,
        TOLLGATE_SETTLEMENT_ENDPOINT: `http://127.0.0.1:${settlementPort}`,
        // The gateways keep the address they were given.
        ...(restartOf ? { TOLLGATE_OTLP_HTTP_ENDPOINT: restartOf.env.TOLLGATE_OTLP_HTTP_ENDPOINT! } : {}),
      },
      storageDir: restartOf?.storageDir,
    });
    collectors.push(c);
    return c;
  }

  /** `tollgate serve` sending billing spans to the Collector, with an account per name. */
  async function gateway(otlpEndpoint: string, accounts: string[], args: string[] = [], env: Record<string, string> = {}): Promise<TollgateProcess> {
    const p = await startTollgate(
      'serve',
      [
        '--port', '0',
        '--openai-upstream', upstream.url,
        '--ledger', url,
        // The OTLP exporter posts to this URL as given: the signal path is part of it.
        '--otlp-endpoint', `${otlpEndpoint}/v1/traces`,
        ...accounts.flatMap((a) => ['--account', `${a}:${keyOf(a)}:${CREDITS}`]),
        ...args,
      ],
      { env: { TOLLGATE_OTLP_TOKEN: COLLECTOR_TOKEN, ...env } },
    );
    processes.push(p);
    return p;
  }

  async function settledAll(accounts: string[], timeoutMs = 30_000): Promise<void> {
    await until(
      'every reservation settled',
      async () => (await Promise.all(accounts.map((a) => isSettled(ledger, a, servedBy(served, a).length)))).every(Boolean),
      timeoutMs,
    );
  }

  it('settles a concurrent mix of completed, cancelled, over-running, usage-missing and failed requests exactly', async () => {
    const settlePort = await freePort();
    // One after the other: the Collector picks free ports of its own, and must not pick settlement's
    // before settlement has bound it.
    const settle = await settlement(settlePort);
    const c = await collector(settlePort);
    const accounts = ['mix-a', 'mix-b', 'mix-c', 'mix-d'];
    const g = await gateway(c.otlpEndpoint, accounts);

    await burst(accounts.map((a) => client(g.url, a)), 12);
    const requests = served.length;
    expect(requests).to.equal(4 * 12);
    await settledAll(accounts);

    for (const a of accounts) await expectExact(ledger, a, served);
    expect(await ledger.openReservations()).to.equal(0);
    // Every span went through the Collector, and settlement settled each reservation once.
    expect(await c.metric('otelcol_receiver_accepted_spans')).to.equal(requests);
    expect(await scrape(`${settle.url}/metrics`, 'tollgate_settlements_total', { result: 'settled' })).to.equal(requests);
    expect(await c.metric('otelcol_exporter_send_failed_spans', BILLING_EXPORTER)).to.be.oneOf([undefined, 0]);
  });

  it('rides out settlement down for 20 s under traffic: everything the Collector accepted is settled afterwards, nothing twice', async () => {
    const settlePort = await freePort();
    const first = await settlement(settlePort);
    const c = await collector(settlePort);
    const accounts = ['outage-a', 'outage-b', 'outage-c'];
    const g = await gateway(c.otlpEndpoint, accounts);
    const load = traffic(accounts.map((a) => client(g.url, a)), 50);

    await sleep(2_000);
    expect(await first.stop('SIGTERM')).to.deep.equal({ code: 0, signal: null });
    const downAt = Date.now();
    // While settlement is down the spans wait in the Collector's persistent queue and their
    // reservations stay open (the 900 s default TTL keeps the sweeper out of it).
    await until('spans queued in the Collector', async () => ((await c.metric('otelcol_exporter_queue_size', BILLING_EXPORTER)) ?? 0) > 0, 15_000);
    await sleep(20_000 - (Date.now() - downAt));
    const queued = (await c.metric('otelcol_exporter_queue_size', BILLING_EXPORTER))!;
    const held = (await Promise.all(accounts.map((a) => ledger.account(a)))).reduce((sum, b) => sum + b!.held, 0);
    expect(queued).to.be.above(0);
    expect(held).to.be.above(0);

    const second = await settlement(settlePort);
    await sleep(2_000); // traffic goes on across the restart
    await load.stop();
    await settledAll(accounts, 60_000);

    for (const a of accounts) await expectExact(ledger, a, served);
    expect(await ledger.openReservations()).to.equal(0);
    // The Collector accepted every span, and the queue is empty: all of it was settled, once.
    expect(await c.metric('otelcol_receiver_accepted_spans')).to.equal(served.length);
    await until('an empty Collector queue', async () => (await c.metric('otelcol_exporter_queue_size', BILLING_EXPORTER)) === 0, 10_000);
    const duplicates = await scrape(`${second.url}/metrics`, 'tollgate_settlements_total', { result: 'duplicate' });
    console.log(`    ${served.length} requests; ${queued} spans queued after 20 s without settlement; ${duplicates} redelivered span(s) recognised as duplicates`);
  });

  it('loses nothing the Collector accepted when it is SIGKILLed mid-traffic and restarted on the same queue directory', async () => {
    // Settlement stays down until the end: whatever the Collector accepts stays in its queue, so
    // the kill hits a queue full of spans that exist nowhere else.
    const settlePort = await freePort();
    const first = await collector(settlePort);
    const queuedAccounts = ['kill-queued-a', 'kill-queued-b'];
    const midAccounts = ['kill-mid-a', 'kill-mid-b'];
    const g = await gateway(first.otlpEndpoint, [...queuedAccounts, ...midAccounts]);

    // Phase 1: traffic, then a pause until the Collector has accepted every span: from here on
    // they live only in its persistent queue (the gateway's exporter has let go of them).
    let load = traffic(queuedAccounts.map((a) => client(g.url, a)));
    await sleep(3_000);
    await load.stop();
    const phase1 = served.length;
    await until('every phase-1 span accepted', async () => (await first.metric('otelcol_receiver_accepted_spans')) === phase1, 15_000);
    expect(await first.metric('otelcol_exporter_queue_size', BILLING_EXPORTER)).to.equal(phase1);

    // Phase 2: traffic again from other accounts, and SIGKILL in the middle of it.
    load = traffic(midAccounts.map((a) => client(g.url, a)));
    await sleep(1_500);
    const acceptedBeforeKill = (await first.metric('otelcol_receiver_accepted_spans'))!;
    expect((await first.kill()).signal).to.equal('SIGKILL');
    const second = await collector(settlePort, first);
    // The restarted Collector found at least everything accepted before the kill in the queue.
    expect(await second.metric('otelcol_exporter_queue_size', BILLING_EXPORTER)).to.be.at.least(acceptedBeforeKill);
    await sleep(2_000);
    await load.stop();

    const settle = await settlement(settlePort);
    await settledAll(queuedAccounts, 60_000);
    for (const a of queuedAccounts) await expectExact(ledger, a, served);
    // The requests around the kill: their spans went to the dying Collector (accepted, persisted,
    // maybe unanswered) or were retried by the gateway's exporter into the restarted one. Either
    // way each reservation is settled once; the exporter's retries (about 8 s) outlast the restart.
    await settledAll(midAccounts, 60_000);
    for (const a of midAccounts) await expectExact(ledger, a, served);
    expect(await ledger.openReservations()).to.equal(0);
    await until('an empty Collector queue', async () => (await second.metric('otelcol_exporter_queue_size', BILLING_EXPORTER)) === 0, 10_000);
    const duplicates = await scrape(`${settle.url}/metrics`, 'tollgate_settlements_total', { result: 'duplicate' });
    console.log(
      `    ${phase1} spans queued before the kill, ${served.length - phase1} requests around it; ` +
        `${duplicates} span(s) delivered twice (accepted before the kill and sent again), recognised as duplicates`,
    );
  });

  it('Collector down: measures the billing spans the gateway drops, and the sweeper settles their reservations at the reserved amount', async () => {
    // In-process settlement: `tollgate settle` runs its sweeper every 10 s and has no flag to
    // change that (settle --sweep-interval takes whole seconds); here it sweeps every 250 ms.
    const settleLedger = await openPostgresLedger(schema.config({ max: 4 }));
    const registry = new Registry();
    const server = createSettlementServer({ ledger: settleLedger, pricing: [defaultPricing()], tokens: [SETTLEMENT_TOKEN], registry });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const sweeper: Sweeper = startSweeper({ ledger: settleLedger, intervalMs: 250, registry });
    cleanups.push(async () => {
      await sweeper.stop();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await settleLedger.close();
    });
    const settlePort = (server.address() as AddressInfo).port;
    const cost = costOf(KINDS.completed.usage);

    const first = await collector(settlePort);
    const TTL = 3;
    // An export gives up after 5 s (retries included; the default is 30 s): the long outage below
    // outlasts it, the short one does not.
    const g = await gateway(first.otlpEndpoint, ['up', 'brief', 'long'], ['--reservation-ttl', String(TTL), '--otlp-timeout', '5']);
    // Collector up: the path works. (A span later than the 3 s TTL is expired, then corrected to
    // the same charge: expectExact accepts either.)
    await burst([client(g.url, 'up')], 6);
    await settledAll(['up']);
    await expectExact(ledger, 'up', served, { sweeper: true });

    // A short outage, inside the exporter's retry window (5 attempts with back-off, ≈8 s, within
    // its 10 s timeout): the spans arrive late, nothing is lost.
    await first.stop('SIGTERM');
    await burst([client(g.url, 'brief')], 6, ['completed']);
    await sleep(2_000);
    await collector(settlePort, first);
    // Settled from its span, or expired by the sweeper (TTL 3 s) and then corrected: charged the cost.
    await until(
      'every span of the short outage settled',
      async () => {
        const brief = await reservationsOf(ledger, 'brief');
        return brief.length === 6 && brief.every((r) => r.charged === cost);
      },
      20_000,
    );
    await expectExact(ledger, 'brief', served, { sweeper: true });

    // A long outage: no Collector for 12 s after the last request ended.
    await collectors.at(-1)!.stop('SIGTERM');
    const downAt = Date.now();
    const requests = 12;
    await burst([client(g.url, 'long')], requests, ['completed']);
    const lastEnded = Date.now();
    // No span arrives: the sweeper settles each reservation once its TTL passed, at the reserved amount.
    await settledAll(['long'], (TTL + 10) * 1000);
    for (const r of await reservationsOf(ledger, 'long')) expect(r).to.deep.include({ outcome: 'expired', charged: r.reserved, entries: ['charge'] });
    await sleep(12_000 - (Date.now() - lastEnded));
    const last = await collector(settlePort, first);
    const downFor = (Date.now() - downAt) / 1000;
    // What the gateway says it dropped, before stopping it flushes whatever its exporter still holds.
    const droppedByGateway = parseSample(await (await fetch(`${g.url}/metrics`)).text(), 'tollgate_billing_spans_dropped_total') ?? 0;
    await g.stop('SIGTERM');
    await until(
      'the Collector queue drained',
      async () =>
        (await last.metric('otelcol_exporter_queue_size', BILLING_EXPORTER)) === 0 &&
        ((await last.metric('otelcol_exporter_sent_spans', BILLING_EXPORTER)) ?? 0) === ((await last.metric('otelcol_receiver_accepted_spans')) ?? 0),
      20_000,
    );

    // Measured from the outside too: a reservation whose span never arrived stays as the sweeper
    // left it; a span that arrived late corrected it. The gateway's own count and log must agree.
    const long = await reservationsOf(ledger, 'long');
    expect(long).to.have.length(requests);
    const late = long.filter((r) => r.correctedTo !== undefined);
    const dropped = long.filter((r) => r.correctedTo === undefined);
    for (const r of dropped) expect(r).to.deep.include({ outcome: 'expired', charged: r.reserved, entries: ['charge'] });
    for (const r of late) expect(r).to.deep.include({ correctedTo: 'completed', charged: cost, entries: ['charge', 'correction'] });
    expect((await last.metric('otelcol_receiver_accepted_spans')) ?? 0).to.equal(late.length);
    expect(dropped.length, 'spans dropped by the gateway while no Collector listened').to.be.at.least(1);
    expect(droppedByGateway, 'tollgate_billing_spans_dropped_total').to.equal(dropped.length);
    // Each reservation is what the rules say for its request, and the balance adds up.
    expect(long.map((r) => r.reserved).sort()).to.deep.equal(servedBy(served, 'long').map((s) => expectedOf(s).reserved).sort());
    const charged = long.reduce((sum, r) => sum + r.charged, 0);
    expect(await ledger.account('long')).to.deep.include({ balance: CREDITS * MICROS_PER_CREDIT - charged, held: 0 });
    expect(await ledger.openReservations()).to.equal(0);
    const gatewaySaid = g.logs().split('\n').filter((line) => /billing spans could not be exported/.test(line));
    expect(gatewaySaid.length, 'the gateway logs its drops').to.be.at.least(1);
    console.log(
      `    Collector down ${downFor.toFixed(0)} s: the gateway dropped ${dropped.length} of ${requests} billing spans, all settled by the ` +
        `sweeper at the reserved amount (${late.length} arrived late and corrected it); gateway log lines about it: ${gatewaySaid.length}. ` +
        `Down 2 s: 0 of 6 dropped.`,
    );
  });

  it('delivers every billing span when the gateway process is configured for 0% trace sampling', async () => {
    const settlePort = await freePort();
    await settlement(settlePort);
    const c = await collector(settlePort);
    const accounts = ['unsampled-a', 'unsampled-b'];
    // The standard SDK variables: a tracer provider that honoured them would sample out every span.
    const g = await gateway(c.otlpEndpoint, accounts, [], { OTEL_TRACES_SAMPLER: 'traceidratio', OTEL_TRACES_SAMPLER_ARG: '0' });
    await burst(accounts.map((a) => client(g.url, a)), 6);
    await settledAll(accounts);
    for (const a of accounts) await expectExact(ledger, a, served);
    expect(await c.metric('otelcol_receiver_accepted_spans')).to.equal(served.length);
  });
});
