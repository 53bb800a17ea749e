/**
 * The soak's four scenarios. Each starts its own gateway and settlement processes on a database
 * of its own (on the soak's own PostgreSQL server), drives traffic through the gateway from this
 * process (which also runs the fake upstream), prints what it sees as it goes, and returns its
 * checks and figures for the summary.
 */
import { startBarrierUpstream } from './barrier-upstream.js';
import type { OwnPostgres } from './postgres.js';
import { heapAfterGc, median, peakRss, percentile, probeLines, startSampler, type Sample } from './sampler.js';
import { check, formatStates, startStack, verifyLedger, type Check, type LedgerReport, type Stack } from './stack.js';
import { accounts, Book, closedLoop, type Account, COMPLETED_COST, kindOf, reservationOf, send, streaming, type Sent, type StreamProfile } from './traffic.js';

export interface ScenarioContext {
  pg: OwnPostgres;
  upstream: string;
  /** How the fake upstream streams (read by its replier for each request). */
  profile: StreamProfile;
  log(line: string): void;
}

export interface ScenarioReport {
  name: string;
  checks: Check[];
  /** Key figures for the summary table. */
  figures: string;
}

/** Credits per account: far more than any run spends, so no request is refused for credits. */
const CREDITS = 1000;
const INITIAL = CREDITS * 1_000_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const mb = (value: number) => `${value.toFixed(0)} MB`;

interface Setup {
  list: Account[];
  ledgerUrl: string;
  stack: Stack;
  book: Book;
  checks: Check[];
}

/**
 * A scenario's own database (soak_NAME), `accountCount` accounts (NAME-0, NAME-1, …) and a
 * gateway + settlement stack on it (forwarding to `upstream`, the shared fake upstream by
 * default), stopped once `body` is done.
 */
async function withStack(
  context: ScenarioContext,
  { name, accountCount, serveArgs = [], upstream = context.upstream }: { name: string; accountCount: number; serveArgs?: string[]; upstream?: string },
  body: (setup: Setup) => Promise<ScenarioReport>,
): Promise<ScenarioReport> {
  const list = accounts(name, accountCount);
  const ledgerUrl = await context.pg.createDatabase(`soak_${name}`);
  const stack = await startStack({ ledgerUrl, upstream, accounts: list, credits: CREDITS, serveArgs });
  try {
    return await body({ list, ledgerUrl, stack, book: new Book(), checks: [] });
  } finally {
    await stack.stop();
  }
}

/** After the traffic: both processes alive (unless `exited` is expected), then the ledger's checks. */
async function ledgerChecks(
  context: ScenarioContext,
  { stack, ledgerUrl, book, list, checks }: Setup,
  options: { settleTimeoutMs: number; skipBalances?: boolean; exited?: boolean },
): Promise<LedgerReport> {
  if (!options.exited) checks.push(stack.survived());
  const ledger = await verifyLedger({ ledgerUrl, book, accounts: list, initial: INITIAL, settleTimeoutMs: options.settleTimeoutMs, skipBalances: options.skipBalances });
  checks.push(...ledger.checks);
  context.log(`ledger: ${formatStates(ledger.states)}`);
  return ledger;
}

// --- 1. many concurrent streams -----------------------------------------------------------

export interface BurstOptions {
  clients: number;
  waves: number;
  /** How each stream goes on once all the clients stream (barrier-upstream.ts). */
  stream: StreamProfile;
  /** The clients connect over this long (a few per millisecond rather than one SYN flood). */
  rampMs: number;
}

export async function burst(context: ScenarioContext, options: BurstOptions): Promise<ScenarioReport> {
  const { log } = context;
  const upstream = await startBarrierUpstream(options.stream.chunks, options.stream.delayMs);
  try {
    return await withStack(context, { name: 'burst', accountCount: 50, upstream: upstream.url }, async (setup) => {
      const { list, stack, book, checks } = setup;
      const pid = stack.gateway.pid;
      // Warm up (JIT, pools, the first connections), then the baseline: RSS at rest.
      upstream.release();
      const warm = closedLoop({ gateway: stack.gateway.url, accounts: list, concurrency: 10, book, kind: () => 'completed' });
      while (warm.finished() < 100) await sleep(50);
      warm.stop();
      await warm.done;
      await sleep(1000);
      const rest = startSampler({ pid, url: stack.gateway.url, intervalMs: 250 });
      await sleep(2000);
      rest.stop();
      const baseline = median(rest.samples.map((s) => s.rssMb));
      const baselineHeap = await heapAfterGc(pid, stack.probeFile);
      log(
        `gateway pid ${pid}: baseline RSS ${mb(baseline)} (median of ${rest.samples.length} samples at rest, after 100 warm-up requests), ` +
          `live heap ${mb(baselineHeap)} (after a full GC)`,
      );

      const waves: Array<{ peak: number; after: number; heap: number; concurrent: number; admitSeconds: number; seconds: number; fds: number }> = [];
      for (let wave = 1; wave <= options.waves; wave++) {
        upstream.nextWave();
        streaming.max = 0;
        const peak = peakRss(pid, 100);
        const fdSampler = startSampler({ pid, url: stack.gateway.url, intervalMs: 500 });
        const started = Date.now();
        const sends: Array<Promise<Sent>> = [];
        for (let i = 0; i < options.clients; i++) {
          sends.push(send(stack.gateway.url, list[i % list.length]!, 'completed', { timeoutMs: 180_000 }));
          if (i % Math.max(1, Math.round(options.clients / Math.max(1, options.rampMs))) === 0) await sleep(1);
        }
        // Every stream started (the upstream holds them after their first events): let them run.
        const deadline = Date.now() + 120_000;
        while ((streaming.now < options.clients || upstream.waiting() < options.clients) && Date.now() < deadline) await sleep(20);
        const admitSeconds = (Date.now() - started) / 1000;
        const concurrent = streaming.now;
        upstream.release();
        for (const sent of await Promise.all(sends)) book.record(sent);
        const seconds = (Date.now() - started) / 1000;
        fdSampler.stop();
        const fds = Math.max(0, ...fdSampler.samples.map((s) => s.fds));
        await sleep(1000);
        peak.stop();
        const after = (await rest.sample()).rssMb;
        const heap = await heapAfterGc(pid, stack.probeFile);
        waves.push({ peak: peak.peak(), after, heap, concurrent, admitSeconds, seconds, fds });
        log(
          `wave ${wave}: ${concurrent} of ${options.clients} streaming at once after ${admitSeconds.toFixed(1)} s, all ended after ${seconds.toFixed(1)} s; ` +
            `gateway RSS peak ${mb(peak.peak())}, ${mb(after)} 1 s after, live heap ${mb(heap)} after a full GC; open fds peak ${fds}`,
        );
      }
      const unexpected = book.unexpected().length;
      checks.push(check(`${options.clients} streams at once`, waves.every((w) => w.concurrent >= options.clients), waves.map((w) => w.concurrent).join(', ') + ' at once'));
      // RSS peaks rise and fall with V8's collections (it lets garbage pile up for a few waves,
      // then collects it all): the live heap after a full GC is what shows a leak.
      const last = waves[waves.length - 1]!;
      checks.push(
        check(
          'memory flat across waves (live heap after GC within 20% or 10 MB of the 1st wave)',
          waves.every((w) => w.heap <= Math.max(waves[0]!.heap * 1.2, waves[0]!.heap + 10)),
          `live heap ${mb(baselineHeap)} at rest, after each wave ${waves.map((w) => mb(w.heap)).join(' → ')}; RSS peaks ${waves.map((w) => mb(w.peak)).join(' → ')}`,
        ),
      );
      await ledgerChecks(context, setup, { settleTimeoutMs: 60_000 });
      return {
        name: `1. ${options.clients} concurrent streams ×${options.waves}`,
        checks,
        figures:
          `${book.sent.length} requests (${unexpected} unexpected), ${Math.min(...waves.map((w) => w.concurrent))} at once; ` +
          `RSS baseline ${mb(baseline)}, peak ${mb(Math.max(...waves.map((w) => w.peak)))}, after ${mb(last.after)}; ` +
          `live heap ${mb(baselineHeap)} → ${mb(last.heap)}; fds peak ${Math.max(...waves.map((w) => w.fds))}`,
      };
    });
  } finally {
    await upstream.close();
  }
}

// --- 2. soak at steady load ---------------------------------------------------------------

export interface SoakOptions {
  seconds: number;
  warmupSeconds: number;
  concurrency: number;
  cancelPct: number;
  resetPct: number;
  stream: StreamProfile;
  sampleEveryMs: number;
}

export async function soak(context: ScenarioContext, options: SoakOptions): Promise<ScenarioReport> {
  const { log } = context;
  return withStack(context, { name: 'soak', accountCount: 20 }, async (setup) => {
    const { list, stack, book, checks } = setup;
    const metrics = await stack.metricsText();
    const hasLag = metrics.includes('nodejs_eventloop_lag_seconds');
    log(
      hasLag
        ? 'gateway /metrics has nodejs_eventloop_lag_seconds'
        : 'gateway /metrics has no nodejs_eventloop_lag_seconds (no prom-client default metrics): lag measured inside by loop-probe.mjs and outside as /healthz latency',
    );
    context.profile = options.stream;
    const loop = closedLoop({
      gateway: stack.gateway.url,
      accounts: list,
      concurrency: options.concurrency,
      book,
      kind: (n) => kindOf(n, options.cancelPct, options.resetPct),
    });
    await sleep(options.warmupSeconds * 1000);
    const sampler = startSampler({ pid: stack.gateway.pid, url: stack.gateway.url, probeFile: stack.probeFile, intervalMs: options.sampleEveryMs, count: loop.finished });
    const first = await sampler.sample();
    const heapFirst = await heapAfterGc(stack.gateway.pid, stack.probeFile);
    log(`${'t (s)'.padStart(7)} ${'req/s'.padStart(7)} ${'RSS MB'.padStart(7)} ${'fds'.padStart(5)} ${'lag p99'.padStart(8)} ${'lag max'.padStart(8)} ${'healthz'.padStart(8)}`);
    let previous: Sample = first;
    const row = (s: Sample) => {
      const rate = (s.count - previous.count) / Math.max(0.001, s.at - previous.at);
      previous = s;
      const ms = (v: number | undefined) => (v === undefined ? '-' : `${v.toFixed(1)}ms`);
      log(
        `${s.at.toFixed(0).padStart(7)} ${rate.toFixed(0).padStart(7)} ${s.rssMb.toFixed(0).padStart(7)} ${String(s.fds).padStart(5)} ` +
          `${ms(s.loopP99Ms).padStart(8)} ${ms(s.loopMaxMs).padStart(8)} ${ms(s.healthzMs).padStart(8)}`,
      );
    };
    let printed = 1;
    const deadline = Date.now() + options.seconds * 1000;
    while (Date.now() < deadline) {
      await sleep(Math.min(500, deadline - Date.now()));
      while (printed < sampler.samples.length) row(sampler.samples[printed++]!);
    }
    sampler.stop();
    while (printed < sampler.samples.length) row(sampler.samples[printed++]!);
    const end = sampler.samples[sampler.samples.length - 1]!;
    const heapLast = await heapAfterGc(stack.gateway.pid, stack.probeFile);
    loop.stop();
    await loop.done;

    const samples = sampler.samples;
    const quarter = Math.max(1, Math.floor(samples.length / 4));
    const firstQ = median(samples.slice(0, quarter).map((s) => s.rssMb));
    const lastQ = median(samples.slice(-quarter).map((s) => s.rssMb));
    checks.push(check('RSS flat (last-quarter median within 20% of the first)', lastQ <= firstQ * 1.2, `${mb(firstQ)} → ${mb(lastQ)} (${(((lastQ - firstQ) / firstQ) * 100).toFixed(1)}%)`));
    checks.push(
      check('live heap flat (after a full GC, end within 20% or 10 MB of the start)', heapLast <= Math.max(heapFirst * 1.2, heapFirst + 10), `${mb(heapFirst)} → ${mb(heapLast)}`),
    );
    const probe = probeLines(stack.probeFile).filter((line) => line.t >= Date.now() - (end.at + 1) * 1000);
    const lagP99 = percentile(probe.map((line) => line.p99), 50);
    const lagP99Worst = Math.max(...probe.map((line) => line.p99));
    const lagMax = Math.max(...probe.map((line) => line.max));
    const healthz = samples.map((s) => s.healthzMs).filter((v): v is number => v !== undefined);
    const lagFirstQ = median(probe.slice(0, Math.max(1, Math.floor(probe.length / 4))).map((line) => line.p99));
    const lagLastQ = median(probe.slice(-Math.max(1, Math.floor(probe.length / 4))).map((line) => line.p99));
    checks.push(
      check(
        // Loose: the machine is shared, and a second of someone else's build shows up here.
        'event-loop lag not growing (last-quarter median p99 within 3× the first, or +50 ms)',
        lagLastQ <= Math.max(lagFirstQ * 3, lagFirstQ + 50),
        `${lagFirstQ.toFixed(1)} → ${lagLastQ.toFixed(1)} ms`,
      ),
    );
    const total = book.sent.length;
    const rate = (end.count - first.count) / (end.at - first.at);
    log(
      `${total} requests (${rate.toFixed(0)}/s): ${book.count((s) => s.result === 'completed')} completed, ${book.count((s) => s.result === 'cancelled')} cancelled by the client, ` +
        `${book.count((s) => s.kind === 'reset' && s.result === 'cut')} cut by an upstream reset, ${book.unexpected().length} unexpected`,
    );
    log(
      `gateway event-loop lag (inside, per second): median p99 ${lagP99.toFixed(1)} ms, worst p99 ${lagP99Worst.toFixed(1)} ms, max ${lagMax.toFixed(1)} ms; ` +
        `/healthz from outside: p50 ${percentile(healthz, 50).toFixed(1)} ms, p99 ${percentile(healthz, 99).toFixed(1)} ms`,
    );
    await ledgerChecks(context, setup, { settleTimeoutMs: 60_000 });
    return {
      name: `2. soak ${options.seconds} s, ${options.concurrency} clients`,
      checks,
      figures:
        `${total} requests, ${rate.toFixed(0)}/s, ${options.cancelPct}% cancels, ${options.resetPct}% resets; RSS ${mb(firstQ)} → ${mb(lastQ)} (quarter medians), ` +
        `peak ${mb(Math.max(...samples.map((s) => s.rssMb)))}; live heap ${mb(heapFirst)} → ${mb(heapLast)}; loop lag p99 median ${lagP99.toFixed(1)} ms, worst ${lagP99Worst.toFixed(1)} ms, max ${lagMax.toFixed(1)} ms; ` +
        `/healthz p99 ${percentile(healthz, 99).toFixed(1)} ms`,
    };
  });
}

// --- 3. PostgreSQL restarted mid-traffic ---------------------------------------------------

export interface RestartOptions {
  concurrency: number;
  /** Traffic before the stop, and after the first request admitted again. */
  beforeSeconds: number;
  afterSeconds: number;
  outageSeconds: number;
  stream: StreamProfile;
  /** Short enough that a reservation whose span was lost is swept within the run. */
  reservationTtlSeconds: number;
}

export async function postgresRestart(context: ScenarioContext, options: RestartOptions): Promise<ScenarioReport[]> {
  return [await failClosed(context, options), await failOpen(context, options)];
}

interface Outage {
  /** When the stop was asked for: PostgreSQL still commits what it is running until it is down. */
  stoppedAt: number;
  /** When pg_ctl stop returned: the server is down from here. */
  downAt: number;
  startedAt: number;
  upAt: number;
}

/** Stops the server for `seconds`, then starts it; times in epoch ms. */
async function outage(context: ScenarioContext, seconds: number): Promise<Outage> {
  const stoppedAt = Date.now();
  await context.pg.stop();
  const downAt = Date.now();
  context.log(`PostgreSQL stopped (pg_ctl stop -m fast, ${downAt - stoppedAt} ms)`);
  await sleep(seconds * 1000);
  const startedAt = Date.now();
  await context.pg.start();
  const upAt = Date.now();
  context.log(`PostgreSQL started again after ${((startedAt - stoppedAt) / 1000).toFixed(1)} s down (pg_ctl start: ${upAt - startedAt} ms)`);
  return { stoppedAt, downAt, startedAt, upAt };
}

async function failClosed(context: ScenarioContext, options: RestartOptions): Promise<ScenarioReport> {
  const { log } = context;
  return withStack(context, { name: 'restart', accountCount: 10, serveArgs: ['--ledger-outage', 'reject', '--reservation-ttl', String(options.reservationTtlSeconds)] }, async (setup) => {
    const { list, stack, book, checks } = setup;
    context.profile = options.stream;
    const loop = closedLoop({ gateway: stack.gateway.url, accounts: list, concurrency: options.concurrency, book, kind: () => 'completed', rejectedPauseMs: 100 });
    await sleep(options.beforeSeconds * 1000);
    const times = await outage(context, options.outageSeconds);
    // Recovered: the first request started after the server was up that got a 200.
    let recoveredAt: number | undefined;
    const waitUntil = Date.now() + 60_000;
    while (recoveredAt === undefined && Date.now() < waitUntil) {
      await sleep(100);
      recoveredAt = book.sent.filter((s) => s.startedAt >= times.upAt && s.status === 200).map((s) => s.startedAt).sort((a, b) => a - b)[0];
    }
    await sleep(options.afterSeconds * 1000);
    loop.stop();
    await loop.done;
    const rejected = book.sent.filter((s) => s.result === 'rejected');
    const duringOutage = rejected.filter((s) => s.endedAt >= times.stoppedAt && s.startedAt <= times.upAt + 5000);
    const admittedDuring = book.count((s) => s.status === 200 && s.startedAt > times.downAt && s.startedAt < times.startedAt);
    const lastRejected = Math.max(0, ...rejected.map((s) => s.endedAt));
    const retryAfter = [...new Set(rejected.map((s) => s.retryAfter))].join(', ');
    log(
      `${book.sent.length} requests: ${book.count((s) => s.result === 'completed')} completed, ${rejected.length} answered 503 (Retry-After: ${retryAfter || '-'}), ` +
        `${book.unexpected().length} unexpected; ${admittedDuring} admitted while PostgreSQL was down`,
    );
    log(
      recoveredAt === undefined
        ? 'the gateway did NOT recover within 60 s'
        : `recovered by itself: first 200 for a request started ${((recoveredAt - times.upAt) / 1000).toFixed(2)} s after PostgreSQL was up; ` +
            `last 503 answered ${Math.abs((lastRejected - times.upAt) / 1000).toFixed(2)} s ${lastRejected > times.upAt ? 'after' : 'before'} it was up`,
    );
    checks.push(check('503 + Retry-After during the outage (fail closed)', rejected.length > 0 && rejected.every((s) => s.retryAfter !== undefined), `${rejected.length} × 503`));
    checks.push(check('no request admitted while the ledger was down', admittedDuring === 0, `${admittedDuring} admitted`));
    checks.push(check('the gateway recovered by itself', recoveredAt !== undefined, recoveredAt === undefined ? 'no 200 after the restart' : `${((recoveredAt - times.upAt) / 1000).toFixed(2)} s after PostgreSQL was up`));
    const ledger = await ledgerChecks(context, setup, { settleTimeoutMs: (options.reservationTtlSeconds + 30) * 1000 });
    const expired = ledger.states.filter((row) => row.state === 'expired' || row.state === 'corrected').reduce((n, row) => n + row.count, 0);
    checks.push(check('no billing span lost (none settled by the sweeper)', expired === 0, `${expired} expired by the sweeper`));
    return {
      name: '3. PostgreSQL restart, fail closed',
      checks,
      figures:
        `${options.outageSeconds} s down; ${rejected.length} × 503 (${duringOutage.length} in the outage window), ${book.count((s) => s.result === 'completed')} completed, ` +
        `${book.unexpected().length} unexpected; recovered ${recoveredAt === undefined ? 'never' : `${((recoveredAt - times.upAt) / 1000).toFixed(2)} s after PG up`}; ${expired} swept`,
    };
  });
}

async function failOpen(context: ScenarioContext, options: RestartOptions): Promise<ScenarioReport> {
  const { log } = context;
  // One account: the clients cannot tell metered from unmetered requests, the metric can.
  return withStack(context, { name: 'failopen', accountCount: 1, serveArgs: ['--ledger-outage', 'forward', '--reservation-ttl', String(options.reservationTtlSeconds)] }, async (setup) => {
    const { list, stack, book, checks } = setup;
    context.profile = options.stream;
    const concurrency = Math.max(2, Math.floor(options.concurrency / 2));
    const loop = closedLoop({ gateway: stack.gateway.url, accounts: list, concurrency, book, kind: () => 'completed', rejectedPauseMs: 100 });
    await sleep(2000);
    const times = await outage(context, Math.min(3, options.outageSeconds));
    await sleep(2000);
    loop.stop();
    await loop.done;
    const unmetered = (await stack.metric('tollgate_unmetered_requests_total', { provider: 'openai' })) ?? 0;
    const completed = book.count((s) => s.result === 'completed');
    const servedDuring = book.count((s) => s.status === 200 && s.startedAt > times.downAt && s.startedAt < times.startedAt);
    log(
      `fail open: ${book.sent.length} requests, ${completed} completed, ${book.count((s) => s.result === 'rejected')} × 503, ${book.unexpected().length} unexpected; ` +
        `${servedDuring} served while PostgreSQL was down; tollgate_unmetered_requests_total = ${unmetered}`,
    );
    const ledger = await ledgerChecks(context, setup, { settleTimeoutMs: (options.reservationTtlSeconds + 30) * 1000, skipBalances: true });
    checks.push(check('requests served during the outage (fail open)', servedDuring > 0 && book.count((s) => s.result === 'rejected') === 0, `${servedDuring} served, no 503`));
    checks.push(check('metered + unmetered = completed', ledger.reservations + unmetered === completed, `${ledger.reservations} reservations + ${unmetered} unmetered vs ${completed} completed`));
    // Only the metered requests are charged, each exactly its cost.
    const charged = ledger.states.reduce((n, row) => n + row.charged, 0);
    checks.push(
      check('metered requests charged exactly', charged === ledger.reservations * COMPLETED_COST, `${charged} µcr charged for ${ledger.reservations} reservations × ${COMPLETED_COST}`),
    );
    return {
      name: '3b. PostgreSQL restart, fail open',
      checks,
      figures: `${Math.min(3, options.outageSeconds)} s down; ${completed} completed, ${unmetered} served unmetered (tollgate_unmetered_requests_total), ${ledger.reservations} metered`,
    };
  });
}

// --- 4. graceful shutdown ------------------------------------------------------------------

export interface ShutdownOptions {
  /** Streams that end on their own within the shutdown timeout. */
  streams: number;
  /** Streams that stall, to be cut at the deadline. */
  stalled: number;
  shutdownTimeoutSeconds: number;
  stream: StreamProfile;
}

export async function gracefulShutdown(context: ScenarioContext, options: ShutdownOptions): Promise<ScenarioReport> {
  const { log } = context;
  return withStack(context, { name: 'shutdown', accountCount: 5, serveArgs: ['--shutdown-timeout', String(options.shutdownTimeoutSeconds)] }, async (setup) => {
    const { list, stack, book, checks } = setup;
    context.profile = options.stream;
    let flowing = 0;
    const sends: Array<Promise<Sent>> = [];
    const total = options.streams + options.stalled;
    for (let i = 0; i < total; i++) {
      const kind = i < options.streams ? 'completed' : 'long';
      sends.push(send(stack.gateway.url, list[i % list.length]!, kind, { timeoutMs: 120_000, onFirstBytes: () => flowing++ }));
    }
    const waitUntil = Date.now() + 30_000;
    while (flowing < total && Date.now() < waitUntil) await sleep(10);
    log(`${flowing} streams in flight (${options.streams} ending by themselves in ~${((options.stream.chunks * options.stream.delayMs) / 1000).toFixed(1)} s, ${options.stalled} stalled); SIGTERM`);
    const signalledAt = Date.now();
    const stopped = stack.gateway.stop('SIGTERM', (options.shutdownTimeoutSeconds + 30) * 1000);
    await sleep(300);
    const late = await send(stack.gateway.url, list[0]!, 'completed', { timeoutMs: 5000 });
    const exit = await stopped;
    const exitSeconds = (Date.now() - signalledAt) / 1000;
    for (const sent of await Promise.all(sends)) book.record(sent);
    const completed = book.count((s) => s.kind === 'completed' && s.result === 'completed');
    const cut = book.sent.filter((s) => s.kind === 'long' && s.result === 'cut');
    const cutAfter = cut.map((s) => (s.endedAt - signalledAt) / 1000);
    log(
      `a request 300 ms after SIGTERM: ${late.result === 'error' ? `refused (${late.error})` : `${late.status} ${late.result}`}; ` +
        `gateway exited ${JSON.stringify(exit)} after ${exitSeconds.toFixed(1)} s; ${completed}/${options.streams} streams finished whole, ` +
        `${cut.length}/${options.stalled} stalled ones cut ${cutAfter.length ? `${Math.min(...cutAfter).toFixed(1)}–${Math.max(...cutAfter).toFixed(1)} s` : ''} after SIGTERM`,
    );
    checks.push(check('stopped accepting', late.status === 0 && late.result === 'error', late.error ?? `${late.status}`));
    checks.push(check('exit code 0', exit.code === 0 && exit.signal === null, JSON.stringify(exit)));
    checks.push(check('streams in flight finished whole', completed === options.streams, `${completed}/${options.streams}`));
    checks.push(
      check(
        'stalled streams cut at the deadline',
        cut.length === options.stalled && cutAfter.every((s) => s >= options.shutdownTimeoutSeconds - 0.5 && s < options.shutdownTimeoutSeconds + 5),
        `${cut.length}/${options.stalled}`,
      ),
    );
    // The settlement process is still up: the spans were flushed before the gateway exited.
    const ledger = await ledgerChecks(context, setup, { settleTimeoutMs: 15_000, exited: true });
    const outcomes = Object.fromEntries(ledger.states.map((row) => [row.outcome ?? '-', row.count]));
    checks.push(
      check(
        'each span ended with its outcome',
        outcomes.completed === options.streams && (outcomes.upstream_error ?? 0) === options.stalled,
        `completed ${outcomes.completed ?? 0}, upstream_error ${outcomes.upstream_error ?? 0}`,
      ),
    );
    log(`stalled ones are charged their reservation, ${reservationOf('long')} µcr each; the others ${COMPLETED_COST} µcr`);
    return {
      name: '4. graceful shutdown (SIGTERM)',
      checks,
      figures: `${total} in flight; ${completed} finished, ${cut.length} cut at ${options.shutdownTimeoutSeconds} s; exit ${exit.code} after ${exitSeconds.toFixed(1)} s; all settled`,
    };
  });
}
