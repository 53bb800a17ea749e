/**
 * Settlement throughput into PostgreSQL through the OTLP/HTTP endpoint (protobuf decode, span
 * validation, pricing and one ledger transaction per request included), beside the ceiling of
 * the same database: a bare multi-row `INSERT … SELECT unnest(…) ON CONFLICT DO NOTHING` of the
 * same number of rows in batches of the same size.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test npx tsx bench/settle.ts
 *
 * Method (../shared/BENCHMARKING.md): the settlement server runs in a child process pinned to
 * core 1, this load generator on core 0 (when taskset exists); rounds interleave settlement and
 * baseline, A B A B, and each figure is the median with min–max. Bodies are encoded by the real
 * OpenTelemetry serializer before timing; reservations are created beforehand through the
 * Ledger API. Everything lives in a fresh schema, dropped at the end. Prints and exits 0.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { Agent, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import pg from 'pg';
import { createSettlementServer } from '../collector/index.js';
import { openLedger } from '../ledger/index.js';
import { defaultPricing } from '../plugin/default-pricing.js';
import { ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS } from '../plugin/semconv.js';
import { billingAttributes } from '../test/collector/helpers.js';
import { createSchema } from '../test/ledger/databases.js';

const BATCH_SIZES = [512, 2048];
const SPANS_PER_RUN = 4096;
const ROUNDS = 5;
/** Requests in flight, as the Collector's sending_queue consumers would have. */
const CONCURRENCY = 4;
const ACCOUNTS = 64;
const TOKEN = 'bench-token';
const PRICING = defaultPricing();

const databaseUrl = process.env.DATABASE_URL;
if (process.argv[2] === '--serve') await serve(process.argv[3]!);
else if (!databaseUrl) console.log('bench/settle: skipped, DATABASE_URL is unset');
else await main(databaseUrl);

/** The database URL with the schema's search_path, so that openLedger(url) works in it. */
function urlOf(url: string, config: pg.PoolConfig): string {
  const u = new URL(url);
  u.searchParams.set('options', config.options!);
  return u.toString();
}

/** The server under test, in its own process. */
async function serve(url: string): Promise<void> {
  const ledger = await openLedger(url);
  const server = createSettlementServer({ ledger, pricing: [PRICING], tokens: [TOKEN] });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    process.send!({ port: typeof address === 'object' && address ? address.port : 0 });
  });
  process.on('message', (message) => {
    if (message === 'cpu') process.send!({ cpu: process.cpuUsage() });
    if (message === 'exit') server.close(() => void ledger.close().then(() => process.exit(0)));
  });
}

async function main(url: string): Promise<void> {
  const started = Date.now();
  // A fresh schema, as the ledger's own tests isolate theirs.
  const schema = await createSchema(url);
  const schemaUrl = urlOf(url, schema.config());
  const pinned = pin();
  const child = await startServer(schemaUrl, pinned);
  const ledger = await openLedger(schemaUrl);
  const pool = new pg.Pool(schema.config({ max: CONCURRENCY }));
  try {
    await pool.query('CREATE TABLE baseline (id text PRIMARY KEY, account text NOT NULL, amount bigint NOT NULL)');

    const accounts = Array.from({ length: ACCOUNTS }, (_, i) => `bench-${i}`);
    for (const account of accounts) await ledger.createAccount(account, 1_000_000_000_000);
    const total = BATCH_SIZES.length * ROUNDS * SPANS_PER_RUN;
    const reservations = Array.from({ length: total }, (_, i) => ({ id: randomUUID(), account: accounts[i % ACCOUNTS]! }));
    const reserveStart = Date.now();
    await inParallel(reservations, 16, async ({ id, account }) => {
      const result = await ledger.reserve({
        reservationId: id,
        accountId: account,
        amount: 100_000,
        ttlSeconds: 3600,
        provider: 'openai',
        model: 'gpt-4o',
        pricingVersion: PRICING.version,
      });
      if (!result.ok) throw new Error(`reserve failed: ${result.reason}`);
    });
    console.log(`bench/settle: ${total} reservations created in ${((Date.now() - reserveStart) / 1000).toFixed(1)} s`);

    const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    const results = new Map<number, { settle: number[]; baseline: number[]; cpuPerSpan: number[] }>();
    let next = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const size of BATCH_SIZES) {
        const slice = reservations.slice(next, next + SPANS_PER_RUN);
        next += SPANS_PER_RUN;
        const bodies = chunk(slice, size).map(encodeBody);
        const entry = results.get(size) ?? { settle: [], baseline: [], cpuPerSpan: [] };
        results.set(size, entry);

        const cpuBefore = await childCpu(child);
        const t0 = performance.now();
        await inParallel(bodies, CONCURRENCY, (body) => postTraces(child.port, body, agent));
        const seconds = (performance.now() - t0) / 1000;
        const cpu = await childCpu(child);
        entry.settle.push(SPANS_PER_RUN / seconds);
        entry.cpuPerSpan.push((cpu.user + cpu.system - cpuBefore.user - cpuBefore.system) / SPANS_PER_RUN);

        const rows = chunk(slice, size);
        const t1 = performance.now();
        await inParallel(rows, CONCURRENCY, (batch) =>
          pool.query('INSERT INTO baseline SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING', [
            batch.map((r) => r.id),
            batch.map((r) => r.account),
            batch.map(() => 4_375),
          ]),
        );
        entry.baseline.push(SPANS_PER_RUN / ((performance.now() - t1) / 1000));
      }
    }
    agent.destroy();

    const open = await ledger.openReservations();
    console.log(
      `bench/settle: ${ROUNDS} rounds × ${SPANS_PER_RUN} spans per batch size, ${CONCURRENCY} requests in flight, ` +
        `server ${pinned ? 'pinned to core 1, load generator to core 0' : 'unpinned (no taskset)'}; open reservations left: ${open}`,
    );
    for (const [size, { settle, baseline, cpuPerSpan }] of results) {
      const ratios = settle.map((s, i) => s / baseline[i]!);
      console.log(
        `  ${String(size).padStart(5)} spans/request: settlement ${rate(settle)} spans/s | bare INSERT unnest ${rate(baseline)} rows/s | ` +
          `ratio ${fmt(ratios, 2)} | server CPU ${fmt(cpuPerSpan, 1)} µs/span`,
      );
    }
    console.log(`bench/settle: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    child.process.send('exit');
    await new Promise((resolve) => child.process.once('exit', resolve));
    await ledger.close();
    await pool.end();
    await schema.drop();
  }
}

/** Pins this process to core 0 (the server goes to core 1); false when taskset is missing. */
function pin(): boolean {
  try {
    execFileSync('taskset', ['-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function startServer(url: string, pinned: boolean): Promise<{ process: ChildProcess; port: number }> {
  const self = fileURLToPath(import.meta.url);
  const node = [process.execPath, '--import', 'tsx', self, '--serve', url];
  const child = pinned
    ? spawn('taskset', ['-c', '1', ...node], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    : spawn(node[0]!, node.slice(1), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (message) => resolve((message as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`settlement server exited with ${code}`)));
  });
  return { process: child, port };
}

function childCpu(child: { process: ChildProcess }): Promise<NodeJS.CpuUsage> {
  return new Promise((resolve) => {
    child.process.once('message', (message) => resolve((message as { cpu: NodeJS.CpuUsage }).cpu));
    child.process.send('cpu');
  });
}

/** One OTLP protobuf body of billing spans as the gateway emits them, from the real SDK and serializer. */
function encodeBody(batch: Array<{ id: string; account: string }>): Uint8Array {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer('bench');
  for (const { id, account } of batch) {
    tracer
      .startSpan('chat gpt-4o', {
        attributes: billingAttributes(
          { reservationId: id, accountId: account, amount: 100_000, pricingVersion: PRICING.version },
          // (900 × 2,500,000 + 100 × 1,250,000 + 200 × 10,000,000) / 1e6 = 4,375 µcr
          { [ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS]: 100 },
        ),
      })
      .end();
  }
  return ProtobufTraceSerializer.serializeRequest(exporter.getFinishedSpans())!;
}

function postTraces(port: number, body: Uint8Array, agent: Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/traces',
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/x-protobuf', authorization: `Bearer ${TOKEN}`, 'content-length': body.length },
      },
      (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`settlement answered ${res.statusCode}`))));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function inParallel<T>(items: T[], concurrency: number, work: (item: T) => Promise<unknown>): Promise<void> {
  let index = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (index < items.length) await work(items[index++]!);
    }),
  );
}

function chunk<T>(items: T[], size: number): T[][] {
  return Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmt(values: number[], digits: number): string {
  return `${median(values).toFixed(digits)} (${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)})`;
}

function rate(values: number[]): string {
  const k = (n: number) => Math.round(n).toLocaleString('en-US');
  return `${k(median(values))} (${k(Math.min(...values))}–${k(Math.max(...values))})`;
}
