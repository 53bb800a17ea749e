/**
 * Streaming SSE through tollgate vs bare express-http-proxy (keep-alive restored) on the same
 * upstream: requests/s, p99 latency and CPU per request of the proxy under test, in interleaved
 * rounds (A B C A B C …), with the median ratio.
 *
 * Two bare proxies: as an Express app is usually served (`http.createServer(app)`, the baseline
 * the targets are against), and served with expressServerClasses as `tollgate serve` is
 * (plugin/server-classes.ts), which spares every request Express's unshared hidden classes. The
 * second ratio is tollgate's own cost, like for like.
 *
 * The gateway runs the compiled package (dist/, built first), as `npx tollgate serve` does.
 *
 * Placement (../shared/BENCHMARKING.md): the proxy under test runs alone on core 1 (taskset); the
 * upstream, the load generator (autocannon), the span sink and a PostgreSQL server on this
 * machine run on core 0. Each round prints how busy core 0 was, which must stay below 100% for
 * the proxy to be what is measured.
 *
 *   [DATABASE_URL=postgres://…] npx tsx bench/proxy.ts [--rounds 5] [--seconds 6] [--warmup 10] [--connections 50] [--ledger URL]
 *
 * Without --ledger: the embedded ledger, then (with DATABASE_URL) PostgreSQL in a schema of its
 * own; each against the same bare proxies, in rounds of their own.
 *
 * The same file is the child processes: `bench/proxy.ts upstream|bare|bare-classes|tollgate PORT …`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import express from 'express';
import proxy from 'express-http-proxy';
import { expressServerClasses } from '../plugin/server-classes.js';
import { createSchema, DATABASE_URL } from '../test/ledger/databases.js';
import { ledgerUrl } from '../test/support/processes.js';

const EVENTS = 60;
/** Requests rotate over this many accounts, as a fleet's traffic does (one hot account is issue 7's case). */
const ACCOUNTS = 100;
const keyOf = (i: number) => `tg-bench-key-${i}`;
const EVENT_BYTES = 340; // 60 × ~340 B ≈ 20 KB, one event per write

/** An OpenAI Responses stream of about 20 KB: 58 deltas between created and completed. */
function responsesBody(): Buffer[] {
  const text = 'x'.repeat(EVENT_BYTES - 120);
  const frames: Buffer[] = [];
  const frame = (type: string, body: object) =>
    frames.push(Buffer.from(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: frames.length, ...body })}\n\n`));
  frame('response.created', { response: { id: 'resp_bench', model: 'gpt-4.1', status: 'in_progress', usage: null } });
  for (let i = 0; i < EVENTS - 2; i++) frame('response.output_text.delta', { item_id: 'msg_1', output_index: 0, content_index: 0, delta: text });
  frame('response.completed', {
    response: {
      id: 'resp_bench',
      model: 'gpt-4.1',
      status: 'completed',
      usage: { input_tokens: 20, input_tokens_details: { cached_tokens: 0 }, output_tokens: 900, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 920 },
    },
  });
  return frames;
}

function listen(server: http.Server, port = 0): Promise<number> {
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)));
}

async function runUpstream(): Promise<void> {
  const frames = responsesBody();
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      for (const frame of frames) res.write(frame);
      res.end();
    });
  });
  server.keepAliveTimeout = 60_000;
  console.log(await listen(server));
}

async function runBare(upstreamPort: number, serverClasses: boolean): Promise<void> {
  const agent = new http.Agent({ keepAlive: true });
  const app = express();
  app.use(
    proxy(`http://127.0.0.1:${upstreamPort}`, {
      proxyReqOptDecorator: (options) => {
        options.headers = { ...options.headers, connection: 'keep-alive' };
        options.agent = agent;
        return options;
      },
    }),
  );
  console.log(await listen(serverClasses ? http.createServer(expressServerClasses(app), app) : http.createServer(app)));
}

async function runTollgate(upstreamPort: number, sinkUrl: string, ledger: string): Promise<void> {
  // The compiled package, as `npx tollgate serve` runs it (orchestrate() builds it first): tsx's
  // on-the-fly compilation adds work per request (name-keeping wrappers on every closure).
  const compiled = new URL('../dist/cli/serve.js', import.meta.url).href;
  const { parseServeArgs, startGatewayServer } = (await import(compiled)) as typeof import('../cli/serve.js');
  const gateway = await startGatewayServer({
    ...parseServeArgs(['--port', '0', '--ledger', ledger, '--otlp-endpoint', sinkUrl], {}),
    openaiUpstream: `http://127.0.0.1:${upstreamPort}`,
    openaiApiKey: 'sk-bench',
    accounts: Array.from({ length: ACCOUNTS }, (_, i) => ({ id: `bench-${i}`, key: keyOf(i), amount: 1_000_000_000_000 })),
  });
  console.log(new URL(gateway.url).port);
}

/** Accepts OTLP exports and answers an empty ExportTraceServiceResponse (an empty protobuf). */
async function startSpanSink(): Promise<{ url: string; spans: () => number; close: () => void }> {
  let bytes = 0;
  const server = http.createServer((req, res) => {
    req.on('data', (chunk: Buffer) => (bytes += chunk.length));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-protobuf' });
      res.end();
    });
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/v1/traces`, spans: () => bytes, close: () => server.close() };
}

const hasTaskset = spawnSync('taskset', ['--version']).status === 0;

/** Sets the cores of `pid` and all its threads; false when taskset cannot (not allowed, no such process). */
function setCores(pid: number, cores: string): boolean {
  return hasTaskset && spawnSync('taskset', ['-a', '-p', '-c', cores, String(pid)]).status === 0;
}

/**
 * Moves the machine's PostgreSQL processes (named `postgres`) to core 0, with the backends they
 * fork from now on (the gateway's connections): unpinned, a backend answering the gateway runs on
 * the gateway's core half the time. Returns what puts them back, or undefined when they could not
 * be moved (not allowed, no local server).
 */
function pinLocalPostgres(): (() => void) | undefined {
  const pids = spawnSync('pgrep', ['-x', 'postgres'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  const before = new Map<number, string>();
  for (const pid of pids) {
    const shown = spawnSync('taskset', ['-c', '-p', String(pid)], { encoding: 'utf8' }).stdout; // "pid N's current affinity list: 0,1"
    const cores = shown.split(': ')[1]?.trim();
    if (cores && setCores(pid, '0')) before.set(pid, cores);
  }
  if (before.size === 0) return undefined;
  return () => {
    for (const [pid, cores] of before) setCores(pid, cores);
  };
}

/** Busy and total jiffies of core 0 so far (/proc/stat). */
function core0(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n').find((line) => line.startsWith('cpu0 '))!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  return { busy: total - fields[3]! - fields[4]!, total };
}

/** Starts this file in another role, on the given core, and waits for the port it prints. */
function child(role: string, core: number, args: string[]): Promise<{ process: ChildProcess; port: number }> {
  const command = [process.execPath, '--import', 'tsx', new URL(import.meta.url).pathname, role, ...args];
  const proc = hasTaskset ? spawn('taskset', ['-c', String(core), ...command]) : spawn(command[0]!, command.slice(1));
  proc.stderr!.pipe(process.stderr);
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`${role} exited with ${code}`)));
    proc.stdout!.once('data', (data: Buffer) => resolve({ process: proc, port: Number(String(data).trim().split('\n').pop()) }));
  });
}

/** User + system CPU seconds of a process so far (/proc/PID/stat, in clock ticks of 1/100 s). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

interface Round {
  rps: number;
  /** How busy core 0 (everything but the proxy) was, 0–1. */
  core0: number;
  p50: number;
  p99: number;
  cpuMicrosPerRequest: number;
  errors: number;
}

async function load(port: number, pid: number, seconds: number, connections: number): Promise<Round> {
  const cpuBefore = cpuSeconds(pid);
  const core0Before = core0();
  let sent = 0;
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/v1/responses`,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        body: JSON.stringify({ model: 'gpt-4.1', input: 'Benchmark me.', stream: true, max_output_tokens: 1000 }),
        // The bare proxy ignores the key; tollgate bills it.
        setupRequest: (request) => ({
          ...request,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${keyOf(sent++ % ACCOUNTS)}` },
        }),
      },
    ],
  });
  const cpu = cpuSeconds(pid) - cpuBefore;
  const core0After = core0();
  const requests = result.requests.total;
  return {
    rps: result.requests.average,
    core0: (core0After.busy - core0Before.busy) / (core0After.total - core0Before.total),
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuMicrosPerRequest: (cpu / Math.max(requests, 1)) * 1e6,
    errors: result.errors + result.non2xx,
  };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const range = (values: number[]) => `${Math.min(...values).toFixed(2)}–${Math.max(...values).toFixed(2)}`;

type Child = { process: ChildProcess; port: number };

interface Setup {
  rounds: number;
  seconds: number;
  warmup: number;
  connections: number;
  sinkUrl: string;
  upstream: Child;
  bare: Child;
  bareClasses: Child;
}

/**
 * Interleaved rounds of the two bare proxies and a gateway on `ledger`; prints the rounds and the
 * ratios.
 */
async function compare({ rounds, seconds, warmup, connections, sinkUrl, upstream, bare, bareClasses }: Setup, ledger: string, label: string, target: number): Promise<void> {
  const gateway = await child('tollgate', 1, [String(upstream.port), sinkUrl, ledger]);
  const measured = { bare, 'bare+classes': bareClasses, tollgate: gateway };
  const run = async (name: keyof typeof measured, duration: number) => load(measured[name].port, measured[name].process.pid!, duration, connections);
  try {
    console.log(`ledger: ${label}`);
    // Warm all (JIT, connection pools) before measuring. The embedded ledger needs the longer
    // warm-up: V8 compiles PGlite's WebAssembly quickly first and optimises its hot functions
    // over the following seconds (a gateway's steady state, not its first seconds, is measured).
    for (const name of Object.keys(measured) as Array<keyof typeof measured>) await run(name, warmup);
    const rows: Array<Record<keyof typeof measured, Round>> = [];
    for (let i = 0; i < rounds; i++) {
      const row = { bare: await run('bare', seconds), 'bare+classes': await run('bare+classes', seconds), tollgate: await run('tollgate', seconds) };
      rows.push(row);
      const shown = Object.entries(row).map(([name, r]) => `${name} ${r.rps.toFixed(0)} req/s p99 ${r.p99} ms ${r.cpuMicrosPerRequest.toFixed(0)} µs CPU/req (core 0 ${(100 * r.core0).toFixed(0)}%)`);
      const errors = Object.entries(row).filter(([, r]) => r.errors > 0);
      console.log(`  round ${i + 1}: ${shown.join(' | ')}` + (errors.length ? ` (errors: ${errors.map(([name, r]) => `${name} ${r.errors}`).join(', ')})` : ''));
    }
    const ratios = (baseline: keyof typeof measured, of: (r: Round) => number) => rows.map((row) => of(row.tollgate) / of(row[baseline]));
    const summary = (values: number[]) => `median ${median(values).toFixed(2)} (${range(values)})`;
    console.log(`  req/s ratio tollgate/bare:         ${summary(ratios('bare', (r) => r.rps))} — target >= ${target.toFixed(2)}`);
    console.log(`  p99 ratio tollgate/bare:           ${summary(ratios('bare', (r) => r.p99))} — target <= 1.2`);
    console.log(`  req/s ratio tollgate/bare+classes: ${summary(ratios('bare+classes', (r) => r.rps))} (like for like)`);
    console.log(`  p99 ratio tollgate/bare+classes:   ${summary(ratios('bare+classes', (r) => r.p99))}`);
    const cpu = (name: keyof typeof measured) => median(rows.map((row) => row[name].cpuMicrosPerRequest)).toFixed(0);
    console.log(
      `  CPU per request: bare ${cpu('bare')} µs, bare+classes ${cpu('bare+classes')} µs, tollgate ${cpu('tollgate')} µs; ` +
        `ratio to bare ${summary(ratios('bare', (r) => r.cpuMicrosPerRequest))}, to bare+classes ${summary(ratios('bare+classes', (r) => r.cpuMicrosPerRequest))}`,
    );
  } finally {
    gateway.process.kill('SIGKILL');
  }
}

async function orchestrate(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: 'string', default: '5' },
      seconds: { type: 'string', default: '6' },
      warmup: { type: 'string', default: '10' },
      connections: { type: 'string', default: '50' },
      ledger: { type: 'string' },
    },
  });
  const rounds = Number(values.rounds);
  const seconds = Number(values.seconds);
  const warmup = Number(values.warmup);
  const connections = Number(values.connections);
  const build = spawnSync('npm', ['run', '--silent', 'build'], { stdio: 'inherit' });
  if (build.status !== 0) throw new Error('npm run build failed');
  // This process is the load generator and the span sink.
  const pinned = setCores(process.pid, '0');
  const unpinPostgres = pinned ? pinLocalPostgres() : undefined;
  const sink = await startSpanSink();
  const upstream = await child('upstream', 0, []);
  const bare = await child('bare', 1, [String(upstream.port)]);
  const bareClasses = await child('bare-classes', 1, [String(upstream.port)]);
  // PostgreSQL (with DATABASE_URL) in a schema of its own, dropped at the end.
  const schema = values.ledger === undefined && DATABASE_URL !== undefined ? await createSchema(DATABASE_URL) : undefined;
  try {
    console.log(
      `streaming SSE (${EVENTS} events, ~${((EVENTS * EVENT_BYTES) / 1024).toFixed(0)} KiB) — ${connections} connections, ` +
        `${seconds}s × ${rounds} rounds each, proxies ${hasTaskset ? 'pinned to core 1' : 'unpinned (no taskset)'}` +
        `${pinned ? `, rest on core 0${unpinPostgres ? '' : ' but PostgreSQL (its processes could not be moved)'}` : hasTaskset ? ', rest unpinned (could not be moved)' : ''}`,
    );
    const setup = { rounds, seconds, warmup, connections, sinkUrl: sink.url, upstream, bare, bareClasses };
    if (values.ledger !== undefined) await compare(setup, values.ledger, values.ledger, values.ledger.startsWith('postgres') ? 0.8 : 0.9);
    else {
      await compare(setup, 'memory://', 'embedded (PGlite in memory)', 0.9);
      if (schema === undefined) console.log('ledger: PostgreSQL skipped, set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it');
      else await compare(setup, ledgerUrl(DATABASE_URL!, schema.config()), 'PostgreSQL', 0.8);
    }
    console.log(`  span export bytes received by the sink: ${sink.spans()}`);
  } finally {
    for (const { process: proc } of [upstream, bare, bareClasses]) proc.kill('SIGKILL');
    sink.close();
    await schema?.drop();
    unpinPostgres?.();
  }
}

const [role, ...rest] = process.argv.slice(2);
// Exit cleanly on SIGINT, so that a child started with --cpu-prof writes its profile.
process.on('SIGINT', () => process.exit(0));
if (role === 'upstream') await runUpstream();
else if (role === 'bare' || role === 'bare-classes') await runBare(Number(rest[0]), role === 'bare-classes');
else if (role === 'tollgate') await runTollgate(Number(rest[0]), rest[1]!, rest[2]!);
else await orchestrate(process.argv.slice(2));
