/**
 * Reserves on one hot account from two gateway processes against one PostgreSQL: group commit
 * (the ledger's default, ledger/group-commit.ts) beside the plain single-row path
 * (maxReserveBatch 1: one statement per reserve, queued on the account's row lock), interleaved
 * round by round; and the same over 1,000 accounts, where group commit must not cost anything.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/hot-account.ts
 *
 * A third line on the hot account, "rows only", is the floor of any design that writes each
 * reservation's row durably before answering — what per-replica credit leases would still pay if
 * they kept reservations individually settleable: the same group commit of reservation rows,
 * without the account row (no admission check). It is how close group commit gets to leases.
 *
 * Method (../shared/BENCHMARKING.md): two child processes ("gateways"), each with its own pool
 * of 16 connections and `concurrency / 2` reserve loops, start each round together. Rounds
 * alternate A B, B A, …; figures are medians over the rounds with min–max of the ratio, latency
 * quantiles over all rounds' reserves. CPU per reserve: the two gateway processes (ledger code and
 * load loop), and the PostgreSQL backends serving them (from /proc; WAL writer excluded). Nothing
 * is pinned: PostgreSQL's backends cannot be, and the two gateways are meant to share the cores
 * as replicas would. The load average is printed before and after: others may share the machine.
 * Works in a schema of its own, dropped at the end. Prints figures and exits 0.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { openPostgresLedger, type SqlLedger } from '../ledger/index.js';
import { groupCommit } from '../ledger/group-commit.js';
import type { ReserveStats } from '../ledger/types.js';
import { createSchema } from '../test/ledger/databases.js';
import {
  ACCOUNTS,
  AMOUNT,
  drive,
  median,
  POOL_SIZE,
  quantile,
  type Sample as ReserveSample,
  ROUND_MS,
  ROUNDS,
  WARM_UP_MS,
} from './reserve.js';

const GATEWAYS = 2;
const APPLICATION = 'tollgate-hot-bench';

type Mode = 'group' | 'plain' | 'rows';
type Workload = 'hot' | 'spread';

interface Round {
  mode: Mode;
  workload: Workload;
  /** Reserve loops in this process. */
  loops: number;
  ms: number;
}

interface RoundResult extends ReserveSample {
  stats: ReserveStats | null;
}

// ── The gateway process ──────────────────────────────────────────────────────────────────────

async function gateway(config: pg.PoolConfig): Promise<void> {
  const pool = (max: number): pg.PoolConfig => ({ ...config, max, idleTimeoutMillis: 0, application_name: APPLICATION });
  const grouped = await openPostgresLedger(pool(POOL_SIZE));
  const plain = await openPostgresLedger(pool(POOL_SIZE), { maxReserveBatch: 1 });
  const bare = new pg.Pool(pool(POOL_SIZE));
  const rowsOnly = rowsOnlyWriter(bare);
  const ledgers: Record<Exclude<Mode, 'rows'>, SqlLedger> = { group: grouped, plain };
  process.on('message', (message: Round | 'exit') => {
    if (message === 'exit') {
      void Promise.all([grouped.close(), plain.close(), bare.end()]).then(() => process.exit(0));
      return;
    }
    const account = message.workload === 'hot' ? () => 'hot' : () => `acct-${Math.floor(Math.random() * ACCOUNTS)}`;
    const ledger = message.mode === 'rows' ? undefined : ledgers[message.mode];
    const before = ledger?.reserveStats();
    const reserve = async () => {
      const request = {
        reservationId: randomUUID(),
        accountId: account(),
        amount: AMOUNT,
        ttlSeconds: 3_600,
        provider: 'openai',
        model: 'gpt-bench',
        pricingVersion: 'p1',
      };
      if (ledger === undefined) return rowsOnly(request.accountId, request.reservationId);
      const result = await ledger.reserve(request);
      if (!result.ok) throw new Error(`reserve refused: ${result.reason}`);
    };
    void drive(message.loops, message.ms, reserve).then((result) => {
      const after = ledger?.reserveStats();
      const stats = before && after ? diffStats(before, after) : null;
      process.send!({ ...result, stats });
    });
  });
  process.send!('ready');
}

/** Group commit of reservation rows alone: no account row, no admission check (see the header). */
function rowsOnlyWriter(pool: pg.Pool): (accountId: string, reservationId: string) => Promise<void> {
  const insert = groupCommit(
    async (rows: Array<{ accountId: string; reservationId: string }>) => {
      await pool.query({
        name: 'rows_only',
        text: `INSERT INTO reservations (id, account_id, amount, expires_at, provider, model, pricing_version)
               SELECT id, account_id, ${AMOUNT}, now() + interval '1 hour', 'openai', 'gpt-bench', 'p1'
                 FROM unnest($1::text[], $2::text[]) AS r(id, account_id)`,
        values: [rows.map((row) => row.reservationId), rows.map((row) => row.accountId)],
      });
      return rows.map(() => undefined);
    },
    { maxGroup: 256, maxInFlight: 1 },
  );
  return async (accountId, reservationId) => {
    await insert([{ accountId, reservationId }]);
  };
}

function diffStats(before: ReserveStats, after: ReserveStats): ReserveStats {
  return {
    requests: after.requests - before.requests,
    admitted: after.admitted - before.admitted,
    refused: after.refused - before.refused,
    statements: after.statements - before.statements,
    largestGroup: after.largestGroup,
  };
}

// ── The coordinator ──────────────────────────────────────────────────────────────────────────

interface Sample {
  perSecond: number;
  latencies: number[];
  /** µs of CPU per reserve: the gateway processes, and PostgreSQL's backends serving them. */
  gatewayCpu: number;
  databaseCpu: number;
  /** Mean reserves per statement (group commit only). */
  groupSize: number | null;
}

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL;
  if (url === undefined) {
    console.log('bench/hot-account: skipped, set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it');
    return;
  }
  const loadBefore = loadavg();
  const schema = await createSchema(url);
  const admin = new pg.Pool(schema.config({ max: 2 }));
  const gateways: ChildProcess[] = [];
  try {
    const setup = await openPostgresLedger(schema.config({ max: 8 }));
    await setup.createAccount('hot', 1e15);
    for (let i = 0; i < ACCOUNTS; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => setup.createAccount(`acct-${i + j}`, 1e15)));
    }
    await setup.close();
    const settings = await admin.query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', 'fsync') ORDER BY name`,
    );
    for (let i = 0; i < GATEWAYS; i++) gateways.push(await startGateway(schema.config()));

    console.log(
      `PostgreSQL ${settings.rows.map((row) => `${row.name}=${row.setting}`).join(', ')}; Node ${process.version}; ` +
        `${GATEWAYS} gateway processes, pool of ${POOL_SIZE} each; load average ${loads(loadBefore)} (1/5/15 min) before`,
    );
    console.log(`reserve: ${ROUNDS} interleaved rounds of ${ROUND_MS / 1_000} s, median [min–max]; conc = reserves in flight over both processes`);
    console.log('workload        conc  path              reserves/s  ratio to plain       p50 / p99 ms   CPU µs/op gateways + PG   per stmt');
    const run = (mode: Mode, workload: Workload, concurrency: number, ms: number) =>
      round(gateways, admin, { mode, workload, loops: concurrency / GATEWAYS, ms });
    for (const [workload, name] of [
      ['hot', 'one hot account'],
      ['spread', `${ACCOUNTS.toLocaleString('en-US')} accounts`],
    ] as const) {
      for (const concurrency of [64, 128]) {
        const modes: Mode[] = workload === 'hot' ? ['plain', 'group', 'rows'] : ['plain', 'group'];
        for (const mode of modes) await run(mode, workload, concurrency, WARM_UP_MS);
        const samples = new Map<Mode, Sample[]>(modes.map((mode) => [mode, []]));
        for (let r = 0; r < ROUNDS; r++) {
          const order = r % 2 === 0 ? modes : [...modes].reverse();
          for (const mode of order) samples.get(mode)!.push(await run(mode, workload, concurrency, ROUND_MS));
        }
        const plain = samples.get('plain')!;
        for (const mode of modes) {
          const label = { plain: 'plain (1 stmt/op)', group: 'group commit', rows: 'rows only' }[mode];
          console.log(line(name, concurrency, label, samples.get(mode)!, plain));
        }
      }
    }
    console.log(`load average ${loads(loadavg())} after`);
  } finally {
    for (const child of gateways) child.send('exit');
    await Promise.all(gateways.map((child) => new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)))));
    await admin.end();
    await schema.drop();
  }
}

async function startGateway(config: pg.PoolConfig): Promise<ChildProcess> {
  const child = fork(fileURLToPath(import.meta.url), ['--gateway', JSON.stringify(config)], { execArgv: ['--import', 'tsx'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`gateway exited with ${code} before it was ready`)));
  });
  return child;
}

/** One round on every gateway at once. */
async function round(gateways: ChildProcess[], admin: pg.Pool, round: Round): Promise<Sample> {
  const backends = await backendPids(admin);
  const dbBefore = cpuTicks(backends);
  const results = await Promise.all(
    gateways.map(
      (child) =>
        new Promise<RoundResult>((resolve) => {
          child.once('message', (message) => resolve(message as RoundResult));
          child.send(round);
        }),
    ),
  );
  const dbMicros = ((cpuTicks(backends) - dbBefore) * 1e6) / CLOCK_TICKS;
  const count = results.reduce((sum, r) => sum + r.latencies.length, 0);
  const statements = results.reduce((sum, r) => sum + (r.stats?.statements ?? 0), 0);
  return {
    // The gateways run over the same window.
    perSecond: results.reduce((sum, r) => sum + r.perSecond, 0),
    latencies: results.flatMap((r) => r.latencies),
    gatewayCpu: results.reduce((sum, r) => sum + r.cpuPerOp * r.latencies.length, 0) / count,
    databaseCpu: dbMicros / count,
    groupSize: round.mode === 'group' && statements > 0 ? count / statements : null,
  };
}

/** The PostgreSQL backends of the gateways' pools. */
async function backendPids(admin: pg.Pool): Promise<number[]> {
  const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1', [APPLICATION]);
  return rows.map((row) => row.pid);
}

/** Linux's USER_HZ, the unit of /proc/PID/stat's CPU times. */
const CLOCK_TICKS = 100;

/** utime + stime of the processes, in clock ticks (0 for one that is gone or unreadable). */
function cpuTicks(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      // The fields after the command name, which is in parentheses and may contain spaces.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Not on this machine (a remote PostgreSQL) or exited: counts 0.
    }
  }
  return ticks;
}

const loads = (values: number[]) => values.map((n) => n.toFixed(2)).join(' ');

function line(workload: string, concurrency: number, label: string, samples: Sample[], plain: Sample[]): string {
  const ratios = samples.map((sample, i) => sample.perSecond / plain[i]!.perSecond);
  const latencies = samples.flatMap((sample) => sample.latencies);
  const groupSizes = samples.map((sample) => sample.groupSize).filter((size): size is number => size !== null);
  return [
    workload.padEnd(15),
    String(concurrency).padStart(4),
    ' ' + label.padEnd(17),
    Math.round(median(samples.map((s) => s.perSecond))).toLocaleString('en-US').padStart(10),
    `  ${median(ratios).toFixed(2)} [${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)}]`.padEnd(20),
    `${quantile(latencies, 0.5).toFixed(2)} / ${quantile(latencies, 0.99).toFixed(2)}`.padStart(14),
    `${median(samples.map((s) => s.gatewayCpu)).toFixed(0)} + ${median(samples.map((s) => s.databaseCpu)).toFixed(0)}`.padStart(26),
    (groupSizes.length > 0 ? median(groupSizes).toFixed(1) : '1').padStart(10),
  ].join(' ');
}

// Last: the constants above are initialised by now.
if (process.argv[2] === '--gateway') await gateway(JSON.parse(process.argv[3]!) as pg.PoolConfig);
else await main();
