/**
 * `npm run soak`: reliability under load, with the gateway and settlement as separate processes
 * (the CLI) on a PostgreSQL server of the soak's own (initdb in a temp dir, a free port; the
 * machine's shared server is never touched).
 *
 *   1. many concurrent streaming clients (1,000 by default, each on its own connection), in
 *      waves: every request settles, balances exact to the micro-credit, gateway RSS baseline
 *      and peak, and flat from wave to wave;
 *   2. a soak at steady load with 5% client cancels and 2% upstream resets: gateway RSS,
 *      event-loop lag (inside, loop-probe.mjs) and /healthz latency over time, flat; at the end
 *      nothing open past its TTL, audit() empty, balances exact;
 *   3. PostgreSQL stopped for a few seconds mid-traffic: 503 + Retry-After meanwhile (fail
 *      closed), the gateway recovers by itself, every admitted request settles, nothing
 *      half-applied; then the fail-open variant (--ledger-outage forward), counted;
 *   4. SIGTERM with streams in flight: stops accepting, finishes them (cuts the stalled ones at
 *      --shutdown-timeout), exits 0, every one of them settled.
 *
 *   npm run soak                       the full run (10-minute soak)
 *   npm run soak -- --minutes 30       a longer soak
 *   npm run soak -- --short            the CI version (~2 minutes in all)
 *   npm run soak -- --only burst,soak  some scenarios (burst, soak, restart, shutdown)
 *   npm run soak -- --clients 2000     more concurrent clients in scenario 1
 *   npm run soak -- --outage 12        PostgreSQL down longer in scenario 3 (default 5 s)
 *
 * Prints as it goes and a summary table at the end; exits 1 when a check failed. File
 * descriptors: the gateway holds two sockets per stream (client and upstream) and this process
 * two more; the soft `ulimit -n` must exceed 4 × clients + a few hundred (checked at start).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startUpstream } from '../test/support/upstream.js';
import { startOwnPostgres } from './soak/postgres.js';
import { burst, gracefulShutdown, postgresRestart, soak, type ScenarioContext, type ScenarioReport } from './soak/scenarios.js';
import { soakReplier } from './soak/traffic.js';

const SCENARIOS = ['burst', 'soak', 'restart', 'shutdown'] as const;

const { values } = parseArgs({
  options: {
    short: { type: 'boolean', default: false },
    minutes: { type: 'string' },
    clients: { type: 'string', default: '1000' },
    only: { type: 'string' },
    outage: { type: 'string', default: '5' },
  },
  strict: true,
});
const short = values.short!;
const clients = Number(values.clients);
const soakSeconds = values.minutes !== undefined ? Math.round(Number(values.minutes) * 60) : short ? 40 : 600;
const only = values.only?.split(',') ?? [...SCENARIOS];
for (const name of only) {
  if (!(SCENARIOS as readonly string[]).includes(name)) {
    console.error(`unknown scenario ${JSON.stringify(name)}; known: ${SCENARIOS.join(', ')}`);
    process.exit(2);
  }
}
if (!Number.isInteger(clients) || clients < 1 || !Number.isFinite(soakSeconds) || soakSeconds < 8 || !(Number(values.outage) >= 1)) {
  console.error('--clients must be a positive integer, --minutes at least 0.14 and --outage at least 1');
  process.exit(2);
}

// The exit handlers stop this run's PostgreSQL server and child processes.
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

const started = Date.now();
const stamp = () => `[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s]`;
const log = (line: string) => console.log(`${stamp()} ${line}`);

const openFiles = Number(/^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? Infinity);
const fdsNeeded = 4 * clients + 500;
if (only.includes('burst') && openFiles < fdsNeeded) {
  console.error(`ulimit -n is ${openFiles}; ${clients} clients need about ${fdsNeeded}: run \`ulimit -n ${fdsNeeded}\` first (the processes inherit it)`);
  process.exit(2);
}

const pg = await startOwnPostgres();
log(`own PostgreSQL on 127.0.0.1:${pg.port}; open-file limit ${openFiles}; ${short ? 'short (CI) run' : 'full run'}`);
const upstream = await startUpstream();
const context: ScenarioContext = { pg, upstream: upstream.url, profile: { chunks: 10, delayMs: 20 }, log };
upstream.reply(soakReplier(() => context.profile));

const reports: ScenarioReport[] = [];
const run = async (name: (typeof SCENARIOS)[number], body: () => Promise<ScenarioReport | ScenarioReport[]>) => {
  if (!only.includes(name)) return;
  console.log(`\n=== ${name} ===`);
  const scenarioStarted = Date.now();
  try {
    const result = await body();
    for (const report of Array.isArray(result) ? result : [result]) {
      reports.push(report);
      for (const { name: checkName, ok, detail } of report.checks) log(`${ok ? 'ok  ' : 'FAIL'} ${checkName}${detail ? `: ${detail}` : ''}`);
    }
  } catch (error) {
    log(`FAIL ${name}: ${(error as Error)?.stack ?? error}`);
    reports.push({ name, checks: [{ name: 'ran to the end', ok: false, detail: String((error as Error)?.message ?? error) }], figures: '' });
  }
  log(`${name}: ${((Date.now() - scenarioStarted) / 1000).toFixed(1)} s`);
};

try {
  await run('burst', () =>
    burst(context, {
      clients,
      waves: short ? 3 : 5,
      // Once all of them stream, each goes on for ~2 s (a write every 100 ms).
      stream: { chunks: 20, delayMs: 100 },
      rampMs: 1000,
    }),
  );
  await run('soak', () =>
    soak(context, {
      seconds: soakSeconds,
      warmupSeconds: short ? 5 : 15,
      concurrency: short ? 24 : 32,
      cancelPct: 5,
      resetPct: 2,
      // ~200 ms per stream
      stream: { chunks: 10, delayMs: 20 },
      sampleEveryMs: soakSeconds <= 60 ? 2000 : 10_000,
    }),
  );
  await run('restart', () =>
    postgresRestart(context, {
      concurrency: 16,
      beforeSeconds: 3,
      afterSeconds: 3,
      outageSeconds: Number(values.outage),
      stream: { chunks: 10, delayMs: 30 },
      reservationTtlSeconds: 30,
    }),
  );
  await run('shutdown', () =>
    gracefulShutdown(context, {
      streams: 40,
      stalled: 5,
      shutdownTimeoutSeconds: 5,
      // ~2 s per stream
      stream: { chunks: 20, delayMs: 100 },
    }),
  );
} finally {
  await upstream.close();
  pg.destroy();
}

const failed = reports.filter((report) => report.checks.some((c) => !c.ok));
const width = Math.max(...reports.map((report) => report.name.length), 8);
console.log(`\n=== summary (${((Date.now() - started) / 1000).toFixed(0)} s) ===`);
console.log(`${'scenario'.padEnd(width)}  result  figures`);
for (const report of reports) {
  const bad = report.checks.filter((c) => !c.ok);
  console.log(`${report.name.padEnd(width)}  ${bad.length === 0 ? 'PASS  ' : 'FAIL  '}  ${report.figures}`);
  for (const c of bad) console.log(`${''.padEnd(width)}          failed: ${c.name}${c.detail ? ` (${c.detail})` : ''}`);
}
process.exitCode = failed.length === 0 ? 0 : 1;
