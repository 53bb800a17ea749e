/**
 * Billing spans through the production path — gateway (`tollgate serve --otlp-endpoint`) →
 * otelcol-tollgate (otel-collector.yaml, persistent queue) → `tollgate settle` → PostgreSQL —
 * beside the embedded path (`tollgate serve` with settlement in the same process), on the same
 * fake upstream and database:
 *   - spans/s: reservations settled from their spans per second of load, at a steady offered
 *     rate and at saturation (closed loop), and how long the backlog took to drain afterwards;
 *   - settlement lag p50/p99: span end → settlement, from the ledger's own columns
 *     (settled_at − span_end_time; settled_at is the settling transaction's start, its commit
 *     follows within milliseconds);
 *   - CPU per span of each process on the path.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/collector-path.ts
 *     [--rounds 3] [--seconds 5] [--rate 150] [--connections 32]
 *
 * Method (../shared/BENCHMARKING.md): rounds interleave the two paths (A B A B …); figures are
 * medians with min–max. The gateways are pinned to core 1; the Collector, the settlement process,
 * this process (fake upstream + autocannon) to core 0 (when taskset exists); PostgreSQL is not
 * pinned. In the embedded path settlement shares the gateway's core, in the Collector path it
 * runs on core 0: the CPU column says what each costs. Works in a schema of its own, dropped at
 * the end. Prints and exits 0; skips without DATABASE_URL or the Collector binary.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import pg from 'pg';
import { createSchema } from '../test/ledger/databases.js';
import { collectorBinary, collectorBinaryPath, freePort, startCollector, type RunningCollector } from '../test/support/otelcol.js';
import { hasTaskset, ledgerUrl, startTollgate, type TollgateProcess } from '../test/support/processes.js';
import { responsesStream, SSE_HEADERS } from '../test/support/provider-streams.js';
import { startUpstream } from '../test/support/upstream.js';

const COLLECTOR_TOKEN = 'bench-collector-token';
const SETTLEMENT_TOKEN = 'bench-settlement-token';
const BILLING_EXPORTER = { exporter: 'otlp_http/settlement' };

const { values: options } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '5' },
    rate: { type: 'string', default: '150' },
    connections: { type: 'string', default: '32' },
  },
});
const ROUNDS = Number(options.rounds);
const SECONDS = Number(options.seconds);
const RATE = Number(options.rate);
const CONNECTIONS = Number(options.connections);

const databaseUrl = process.env.DATABASE_URL;
if (!databaseUrl) console.log('bench/collector-path: skipped, DATABASE_URL is unset');
else if (!collectorBinary()) console.log(`bench/collector-path: skipped, ${collectorBinaryPath} is not built (collector/otelcol/build.sh)`);
else await main(databaseUrl);

interface Path {
  name: string;
  account: string;
  gateway: TollgateProcess;
  /** Every process doing this path's work, for CPU per span. */
  processes: Array<{ role: string; pid: number }>;
}

interface Run {
  requestsPerSecond: number;
  spansPerSecond: number;
  p50: number;
  p99: number;
  drainSeconds: number;
  /** CPU µs per span, by role. */
  cpu: Record<string, number>;
  notSettled: number;
  errors: number;
}

async function main(url: string): Promise<void> {
  const started = Date.now();
  const schema = await createSchema(url);
  const ledger = ledgerUrl(url, schema.config());
  const pool = new pg.Pool(schema.config({ max: 2 }));
  const pinned = pin(process.pid, 0);
  const upstream = await startUpstream();
  // A small Responses stream (about 2 KB) with its usage: 20 input, 300 output tokens.
  upstream.reply({ headers: SSE_HEADERS, chunks: [responsesStream('Benchmarking the billing path. '.repeat(8), { input: 20, output: 300 })] });

  const processes: TollgateProcess[] = [];
  let collector: RunningCollector | undefined;
  try {
    const settlePort = await freePort();
    const settle = await startTollgate('settle', ['--port', String(settlePort), '--ledger', ledger], {
      env: { TOLLGATE_SETTLEMENT_TOKENS: SETTLEMENT_TOKEN },
      core: 0,
    });
    processes.push(settle);
    collector = await startCollector({
      env: {
        TOLLGATE_COLLECTOR_TOKEN: COLLECTOR_TOKEN,
        TOLLGATE_SETTLEMENT_TOKEN: SETTLEMENT_TOKEN,
        TOLLGATE_SETTLEMENT_ENDPOINT: `http://127.0.0.1:${settlePort}`,
      },
    });
    pin(collector.pid, 0);
    const serve = (account: string, extra: string[]) =>
      startTollgate(
        'serve',
        ['--port', '0', '--ledger', ledger, '--openai-upstream', upstream.url, '--account', `${account}:tg-${account}:1000000000`, ...extra],
        { env: { TOLLGATE_OTLP_TOKEN: COLLECTOR_TOKEN }, core: 1 },
      );
    const viaCollector = await serve('via-collector', ['--otlp-endpoint', `${collector.otlpEndpoint}/v1/traces`]);
    processes.push(viaCollector);
    const inProcess = await serve('in-process', []);
    processes.push(inProcess);

    const paths: Path[] = [
      { name: 'in-process', account: 'in-process', gateway: inProcess, processes: [{ role: 'gateway', pid: inProcess.pid }] },
      {
        name: 'collector',
        account: 'via-collector',
        gateway: viaCollector,
        processes: [
          { role: 'gateway', pid: viaCollector.pid },
          { role: 'otelcol', pid: collector.pid },
          { role: 'settle', pid: settle.pid },
        ],
      },
    ];

    console.log(
      `bench/collector-path: gateway → otelcol-tollgate → settle → PostgreSQL vs settlement in the gateway's process\n` +
        `  ${ROUNDS} rounds × ${SECONDS} s per load and path, interleaved; ` +
        (pinned && hasTaskset() ? 'gateways on core 1; Collector, settle, upstream and autocannon on core 0' : 'unpinned (no taskset)') +
        '; PostgreSQL unpinned',
    );
    // Warm-up: JIT, connection pools, the Collector's queue file.
    for (const path of paths) await measure(pool, path, { seconds: 2, connections: CONNECTIONS });

    const loads = [
      { label: `steady ${RATE} req/s`, load: { seconds: SECONDS, connections: CONNECTIONS, rate: RATE } },
      { label: `saturated (${CONNECTIONS} connections, closed loop)`, load: { seconds: SECONDS, connections: CONNECTIONS } },
    ];
    for (const { label, load } of loads) {
      const runs = new Map<string, Run[]>(paths.map((p) => [p.name, []]));
      console.log(`  ${label}:`);
      for (let round = 1; round <= ROUNDS; round++) {
        const line: string[] = [];
        for (const path of paths) {
          const run = await measure(pool, path, load);
          runs.get(path.name)!.push(run);
          line.push(`${path.name} ${describeRun(run)}`);
        }
        console.log(`    round ${round}: ${line.join(' | ')}`);
      }
      const [a, b] = paths.map((p) => runs.get(p.name)!);
      const ratio = (f: (r: Run) => number) => a!.map((r, i) => f(b![i]!) / f(r));
      for (const path of paths) {
        const rs = runs.get(path.name)!;
        const cpuRoles = Object.keys(rs[0]!.cpu);
        console.log(
          `    ${path.name.padEnd(10)} median: ${fmt(rs.map((r) => r.spansPerSecond), 0)} spans/s, lag p50 ${fmt(rs.map((r) => r.p50), 3)} s, ` +
            `p99 ${fmt(rs.map((r) => r.p99), 3)} s, drain ${fmt(rs.map((r) => r.drainSeconds), 1)} s; CPU µs/span ` +
            cpuRoles.map((role) => `${role} ${fmt(rs.map((r) => r.cpu[role]!), 0)}`).join(', '),
        );
      }
      console.log(
        `    collector/in-process: spans/s ${fmt(ratio((r) => r.spansPerSecond), 2)}, lag p50 ${fmt(ratio((r) => r.p50), 1)}, ` +
          `p99 ${fmt(ratio((r) => r.p99), 1)}, gateway CPU/span ${fmt(ratio((r) => r.cpu.gateway!), 2)}`,
      );
    }
    const failed = await collector.metric('otelcol_exporter_send_failed_spans', BILLING_EXPORTER);
    console.log(`bench/collector-path: Collector send failures ${failed ?? 0}; done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    for (const p of processes.reverse()) {
      await p.stop('SIGTERM', 15_000);
      p.cleanup();
    }
    if (collector) {
      await collector.stop();
      collector.cleanup();
    }
    await upstream.close();
    await pool.end();
    await schema.drop();
  }
}

async function measure(pool: pg.Pool, path: Path, load: { seconds: number; connections: number; rate?: number }): Promise<Run> {
  const cpuBefore = path.processes.map((p) => cpuSeconds(p.pid));
  const from = new Date();
  const result = await autocannon({
    url: `${path.gateway.url}/v1/responses`,
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer tg-${path.account}` },
    body: JSON.stringify({ model: 'gpt-4.1', input: 'Benchmark me.', stream: true, max_output_tokens: 1000 }),
    connections: load.connections,
    duration: load.seconds,
    ...(load.rate ? { overallRate: load.rate } : {}),
  });
  const to = new Date();
  // Drained when none of the run's reservations is open any more. A request autocannon cut at the
  // end may still be reserving: look again a moment later before calling it drained.
  const open = async () =>
    (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM reservations WHERE account_id = $1 AND state = 'open'`, [path.account])).rows[0]!.n;
  for (let quiet = 0; quiet < 2 && Date.now() - to.getTime() < 60_000; ) {
    quiet = (await open()) === 0 ? quiet + 1 : 0;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const { rows } = await pool.query<{ settled: number; other: number; p50: number; p99: number; last: Date | null }>(
    `SELECT count(*) FILTER (WHERE state = 'settled')::int AS settled,
            count(*) FILTER (WHERE state <> 'settled')::int AS other,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM settled_at - span_end_time)) AS p50,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM settled_at - span_end_time)) AS p99,
            max(settled_at) AS last
       FROM reservations WHERE account_id = $1 AND created_at >= $2 AND created_at < $3`,
    [path.account, from, to],
  );
  const stats = rows[0]!;
  const seconds = (to.getTime() - from.getTime()) / 1000;
  const cpu: Record<string, number> = {};
  path.processes.forEach((p, i) => (cpu[p.role] = ((cpuSeconds(p.pid) - cpuBefore[i]!) / Math.max(stats.settled, 1)) * 1e6));
  return {
    requestsPerSecond: result.requests.total / seconds,
    spansPerSecond: stats.settled / seconds,
    p50: Number(stats.p50),
    p99: Number(stats.p99),
    // From the end of the load to the last of its settlements.
    drainSeconds: Math.max(0, ((stats.last?.getTime() ?? to.getTime()) - to.getTime()) / 1000),
    cpu,
    notSettled: stats.other,
    errors: result.errors + result.non2xx,
  };
}

function describeRun(run: Run): string {
  return (
    `${run.spansPerSecond.toFixed(0)} spans/s, lag p50 ${run.p50.toFixed(3)} s p99 ${run.p99.toFixed(3)} s` +
    (run.errors || run.notSettled ? ` (errors ${run.errors}, not settled from a span ${run.notSettled})` : '')
  );
}

/** User + system CPU seconds of a process so far (/proc/PID/stat, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Pins every thread of a process to a core; false when taskset is missing. */
function pin(pid: number, core: number): boolean {
  if (!hasTaskset()) return false;
  execFileSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' });
  return true;
}

function median(values: number[]): number {
  return [...values].sort((x, y) => x - y)[Math.floor(values.length / 2)]!;
}

function fmt(values: number[], digits: number): string {
  return `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;
}
