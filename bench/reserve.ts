/**
 * Reservation and settlement throughput of the PostgreSQL ledger, each beside a bare statement
 * doing the least the same work needs (the ceiling), interleaved round by round on the same pool
 * size and concurrency. Figures are medians over the rounds, with min–max.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/reserve.ts
 *
 * Works in a schema of its own, dropped at the end. Prints figures and exits 0 (skips without
 * DATABASE_URL). See ../shared/BENCHMARKING.md for how to read them.
 */
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { openPostgresLedger, type SqlLedger } from '../ledger/index.js';
import type { SettlementRequest } from '../ledger/types.js';

/** Shared with bench/hot-account.ts, so that the two measure alike. */
export const POOL_SIZE = 16;
export const ROUNDS = 5;
export const ROUND_MS = 1_000;
export const WARM_UP_MS = 300;
export const ACCOUNTS = 1_000;
/** Micro-credits per reservation; accounts hold enough for any run. */
export const AMOUNT = 1_000;
const SETTLE_BATCH = 1_000;
const SETTLE_BATCHES_PER_ROUND = 5;

/** The ceiling for reserve: the conditional hold alone, no reservation row. */
const BARE_RESERVE = `UPDATE accounts SET held = held + $2::bigint WHERE id = $1::text AND balance - held >= $2::bigint RETURNING held`;

/** The ceiling for settle: the same rows, written once, with nothing read or locked first. */
const CREATE_BARE_SPANS = `
  CREATE TABLE bare_spans (
    reservation_id TEXT PRIMARY KEY, account_id TEXT NOT NULL, outcome TEXT NOT NULL, cost BIGINT,
    usage JSONB, pricing_version TEXT NOT NULL, span_end_time TIMESTAMPTZ NOT NULL
  )`;
const BARE_SETTLE = `
  INSERT INTO bare_spans
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::text[], $7::timestamptz[])
  ON CONFLICT (reservation_id) DO NOTHING`;

/**
 * Open reservations for a settle round, written straight into the tables (reserving them one by
 * one through the ledger would take most of the time budget), with the accounts' held to match.
 */
const SEED_RESERVATIONS = `
  WITH seeded AS (
    INSERT INTO reservations (id, account_id, amount, expires_at, provider, model, pricing_version)
    SELECT $1::text || g, 'acct-' || (g % ${ACCOUNTS}), ${AMOUNT}, now() + interval '1 hour', 'openai', 'gpt-bench', 'p1'
      FROM generate_series(1, $2::integer) g
    RETURNING account_id, amount
  )
  UPDATE accounts a SET held = a.held + s.total
    FROM (SELECT account_id, sum(amount) AS total FROM seeded GROUP BY account_id) s
   WHERE a.id = s.account_id`;

export interface Sample {
  perSecond: number;
  /** Milliseconds per operation (one reserve; one whole batch for settle). */
  latencies: number[];
  /** CPU time of this process (the ledger code and the load generator) per operation, µs. */
  cpuPerOp: number;
}

/** Runs `op` from `concurrency` loops for `duration` ms. */
export async function drive(concurrency: number, duration: number, op: () => Promise<unknown>): Promise<Sample> {
  const latencies: number[] = [];
  const cpu = process.cpuUsage();
  const started = performance.now();
  const deadline = started + duration;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const start = performance.now();
        await op();
        latencies.push(performance.now() - start);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1_000;
  const used = process.cpuUsage(cpu);
  return { perSecond: latencies.length / seconds, latencies, cpuPerOp: (used.user + used.system) / latencies.length };
}

export function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export const median = (values: number[]) => quantile(values, 0.5);
const whole = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => n.toFixed(1);

/** "median [min–max]" of the per-round ratios. */
function ratios(ledger: Sample[], bare: Sample[]): string {
  const each = ledger.map((sample, i) => sample.perSecond / bare[i]!.perSecond);
  return `${median(each).toFixed(2)} [${Math.min(...each).toFixed(2)}–${Math.max(...each).toFixed(2)}]`;
}

/** Runs A then B in odd rounds and B then A in even ones, so that drift hits both alike. */
async function interleaved(rounds: number, a: () => Promise<Sample>, b: () => Promise<Sample>): Promise<[Sample[], Sample[]]> {
  const as: Sample[] = [];
  const bs: Sample[] = [];
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      as.push(await a());
      bs.push(await b());
    } else {
      bs.push(await b());
      as.push(await a());
    }
  }
  return [as, bs];
}

async function benchReserve(ledger: SqlLedger, bare: pg.Pool): Promise<void> {
  const workloads = [
    { name: 'one hot account', account: () => 'hot' },
    { name: `${whole(ACCOUNTS)} accounts`, account: () => `acct-${Math.floor(Math.random() * ACCOUNTS)}` },
  ];
  console.log(`reserve: pool of ${POOL_SIZE} connections each, ${ROUNDS} interleaved rounds of ${ROUND_MS / 1_000} s, median [min–max]`);
  console.log('workload         conc  ledger/s   bare/s  ratio ledger/bare  p50/p99 ms ledger   p50/p99 ms bare  CPU µs/op ledger/bare');
  for (const workload of workloads) {
    for (const concurrency of [16, 64]) {
      const viaLedger = (duration: number) =>
        drive(concurrency, duration, async () => {
          const result = await ledger.reserve({
            reservationId: randomUUID(),
            accountId: workload.account(),
            amount: AMOUNT,
            ttlSeconds: 3_600,
            provider: 'openai',
            model: 'gpt-bench',
            pricingVersion: 'p1',
          });
          if (!result.ok) throw new Error(`reserve refused: ${result.reason}`);
        });
      const viaBare = (duration: number) =>
        drive(concurrency, duration, () => bare.query({ name: 'bare_reserve', text: BARE_RESERVE, values: [workload.account(), AMOUNT] }));
      // Warm-up: connections opened and statements prepared before anything is measured.
      await viaLedger(WARM_UP_MS);
      await viaBare(WARM_UP_MS);
      const [ledgerSamples, bareSamples] = await interleaved(ROUNDS, () => viaLedger(ROUND_MS), () => viaBare(ROUND_MS));
      console.log(
        [
          workload.name.padEnd(16),
          String(concurrency).padStart(4),
          rate(ledgerSamples).padStart(9),
          rate(bareSamples).padStart(8),
          ' ' + ratios(ledgerSamples, bareSamples).padEnd(18),
          latency(ledgerSamples).padStart(18),
          latency(bareSamples).padStart(16),
          `${cpu(ledgerSamples)} / ${cpu(bareSamples)}`.padStart(22),
        ].join(' '),
      );
    }
  }
}

const rate = (samples: Sample[]) => whole(median(samples.map((sample) => sample.perSecond)));
const cpu = (samples: Sample[]) => median(samples.map((sample) => sample.cpuPerOp)).toFixed(0);
function latency(samples: Sample[]): string {
  const all = samples.flatMap((sample) => sample.latencies);
  return `${ms(quantile(all, 0.5))} / ${ms(quantile(all, 0.99))}`;
}

/** One settlement per seeded reservation: costs below the reserved amount, 1 in 100 over it. */
function spans(prefix: string, count: number): SettlementRequest[] {
  return Array.from({ length: count }, (_, i) => ({
    reservationId: `${prefix}${i + 1}`,
    accountId: `acct-${(i + 1) % ACCOUNTS}`,
    outcome: 'completed' as const,
    cost: i % 100 === 0 ? AMOUNT + 500 : (i * 7) % AMOUNT,
    usage: { input_tokens: 1_000 + i, output_tokens: 200 },
    pricingVersion: 'p1',
    spanEndTime: new Date(),
  }));
}

async function benchSettle(ledger: SqlLedger, pool: pg.Pool): Promise<void> {
  const perRound = SETTLE_BATCH * SETTLE_BATCHES_PER_ROUND;
  let round = 0;
  const batches = (requests: SettlementRequest[]) =>
    Array.from({ length: SETTLE_BATCHES_PER_ROUND }, (_, i) => requests.slice(i * SETTLE_BATCH, (i + 1) * SETTLE_BATCH));
  /** Settles `perRound` fresh reservations, one batch after another, as one settlement replica does. */
  const viaLedger = async (): Promise<Sample> => {
    const prefix = `settle-${++round}-`;
    await pool.query(SEED_RESERVATIONS, [prefix, perRound]);
    return timeBatches(batches(spans(prefix, perRound)), async (batch) => {
      const outcomes = await ledger.settle(batch, 'cap');
      if (outcomes.some((outcome) => outcome.result !== 'settled')) throw new Error('a benchmark span did not settle');
    });
  };
  const viaBare = async (): Promise<Sample> => {
    const prefix = `bare-${++round}-`;
    return timeBatches(batches(spans(prefix, perRound)), async (batch) => {
      await pool.query({
        name: 'bare_settle',
        text: BARE_SETTLE,
        values: [
          batch.map((s) => s.reservationId),
          batch.map((s) => s.accountId),
          batch.map((s) => s.outcome),
          batch.map((s) => s.cost),
          batch.map((s) => JSON.stringify(s.usage)),
          batch.map((s) => s.pricingVersion),
          batch.map((s) => s.spanEndTime.toISOString()),
        ],
      });
    });
  };
  await viaLedger();
  await viaBare();
  const [ledgerSamples, bareSamples] = await interleaved(ROUNDS, viaLedger, viaBare);
  console.log();
  console.log(`settle: batches of ${whole(SETTLE_BATCH)}, ${SETTLE_BATCHES_PER_ROUND} per round, one after another; ${ROUNDS} interleaved rounds, median [min–max]`);
  console.log(`  settle()                   ${rate(ledgerSamples).padStart(7)} spans/s   batch p50/p99 ${latency(ledgerSamples)} ms   CPU ${cpu(ledgerSamples)} µs/span`);
  console.log(`  bare INSERT unnest         ${rate(bareSamples).padStart(7)} rows/s    batch p50/p99 ${latency(bareSamples)} ms   CPU ${cpu(bareSamples)} µs/row`);
  console.log(`  ratio settle()/bare        ${ratios(ledgerSamples, bareSamples)}`);
}

/** Runs the batches one after another; rates are per row. */
async function timeBatches(batches: SettlementRequest[][], write: (batch: SettlementRequest[]) => Promise<void>): Promise<Sample> {
  const latencies: number[] = [];
  const cpu = process.cpuUsage();
  const started = performance.now();
  for (const batch of batches) {
    const start = performance.now();
    await write(batch);
    latencies.push(performance.now() - start);
  }
  const rows = batches.reduce((sum, batch) => sum + batch.length, 0);
  const used = process.cpuUsage(cpu);
  return { perSecond: rows / ((performance.now() - started) / 1_000), latencies, cpuPerOp: (used.user + used.system) / rows };
}

/** 'hot' and acct-0 … acct-999, each with more credits than any run can spend. */
async function openAccounts(ledger: SqlLedger): Promise<void> {
  const accounts = ['hot', ...Array.from({ length: ACCOUNTS }, (_, i) => `acct-${i}`)];
  for (let i = 0; i < accounts.length; i += POOL_SIZE) {
    await Promise.all(accounts.slice(i, i + POOL_SIZE).map((id) => ledger.createAccount(id, 1e15)));
  }
}

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL;
  if (url === undefined) {
    console.log('bench/reserve: skipped, set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it');
    return;
  }
  const schema = `tollgate_bench_${process.pid}`;
  const config = (max: number): pg.PoolConfig => ({ connectionString: url, max, options: `-c search_path=${schema}` });
  const setup = new pg.Client({ connectionString: url });
  await setup.connect();
  await setup.query(`CREATE SCHEMA ${schema}`);
  const settings = await setup.query<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync') ORDER BY name`,
  );
  await setup.end();
  let ledger: SqlLedger | undefined;
  const bare = new pg.Pool(config(POOL_SIZE));
  try {
    ledger = await openPostgresLedger(config(POOL_SIZE));
    await openAccounts(ledger);
    await bare.query(CREATE_BARE_SPANS);
    console.log(
      `PostgreSQL ${settings.rows.map((row) => `${row.name}=${row.setting}`).join(', ')}; ` +
        `Node ${process.version}; load generator and ledger code in this process, PostgreSQL on the same 2 cores`,
    );
    console.log();
    await benchReserve(ledger, bare);
    await benchSettle(ledger, bare);
  } finally {
    await ledger?.close();
    await bare.query(`DROP SCHEMA ${schema} CASCADE`);
    await bare.end();
  }
}

// Only when run (npm run bench, tsx bench/reserve.ts), not when bench/hot-account.ts imports the
// measuring helpers above.
if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main();
