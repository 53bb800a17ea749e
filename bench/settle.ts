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
import type { SettlementRequest } from '../ledger/types.js';
import { defaultPricing } from '../plugin/default-pricing.js';
import { ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS } from '../plugin/semconv.js';
import { billingAttributes } from '../test/collector/helpers.js';
import { createSchema } from '../test/ledger/databases.js';

const BATCH_SIZES = [512, 2048];
/** Spans per endpoint run; the ledger-alone runs take half as many (it is the steadier figure). */
const SPANS_PER_RUN = 8_192;
const LEDGER_SPANS_PER_RUN = SPANS_PER_RUN / 2;
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

/** The database URL with the schema's search_path (and more settings), so that openLedger(url) works in it. */
function urlOf(url: string, config: pg.PoolConfig, settings = ''): string {
  const u = new URL(url);
  u.searchParams.set('options', `${config.options!} ${settings}`.trim());
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
  // Creating the reservations is set-up, not measured: without waiting for each commit's fsync.
  const setup = await openLedger(urlOf(url, schema.config(), '-c synchronous_commit=off'));
  const pool = new pg.Pool(schema.config({ max: CONCURRENCY }));
  try {
    await pool.query('CREATE TABLE baseline (id text PRIMARY KEY, account text NOT NULL, amount bigint NOT NULL)');

    const accounts = Array.from({ length: ACCOUNTS }, (_, i) => `bench-${i}`);
    for (const account of accounts) await setup.createAccount(account, 1_000_000_000_000);
    // Each run settles fresh reservations: one set through the endpoint, one straight into the ledger.
    const total = BATCH_SIZES.length * ROUNDS * (SPANS_PER_RUN + LEDGER_SPANS_PER_RUN);
    const reservations = Array.from({ length: total }, (_, i) => ({ id: randomUUID(), account: accounts[i % ACCOUNTS]! }));
    const reserveStart = Date.now();
    await inParallel(reservations, 16, async ({ id, account }) => {
      const result = await setup.reserve({
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
    const results = new Map<number, { endpoint: number[]; ledger: number[]; baseline: number[]; cpuPerSpan: number[] }>();
    let next = 0;
    const take = (count: number) => reservations.slice(next, (next += count));
    for (let round = 0; round < ROUNDS; round++) {
      for (const size of BATCH_SIZES) {
        const entry = results.get(size) ?? { endpoint: [], ledger: [], baseline: [], cpuPerSpan: [] };
        results.set(size, entry);

        // A: the endpoint (OTLP protobuf over HTTP → decode → records → group commit → ledger).
        const endpointRun = take(SPANS_PER_RUN);
        const bodies = chunk(endpointRun, size).map(encodeBody);
        const cpuBefore = await childCpu(child);
        entry.endpoint.push(
          await perSecond(SPANS_PER_RUN, () => inParallel(bodies, CONCURRENCY, (body) => postTraces(child.port, body, agent))),
        );
        const cpu = await childCpu(child);
        entry.cpuPerSpan.push((cpu.user + cpu.system - cpuBefore.user - cpuBefore.system) / SPANS_PER_RUN);

        // B: settlements like those, handed to ledger.settle() directly, one transaction at a time.
        const direct = chunk(take(LEDGER_SPANS_PER_RUN), size).map((batch) => batch.map(settlementOf));
        entry.ledger.push(
          await perSecond(LEDGER_SPANS_PER_RUN, async () => {
            for (const batch of direct) await ledger.settle(batch, 'cap');
          }),
        );

        // C: the database's ceiling: a bare multi-row insert of as many rows.
        const rows = chunk(endpointRun, size);
        entry.baseline.push(
          await perSecond(SPANS_PER_RUN, () =>
            inParallel(rows, CONCURRENCY, (batch) =>
              pool.query('INSERT INTO baseline SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING', [
                batch.map((r) => r.id),
                batch.map((r) => r.account),
                batch.map(() => 4_375),
              ]),
            ),
          ),
        );
      }
    }
    agent.destroy();

    const open = await ledger.openReservations();
    console.log(
      `bench/settle: ${ROUNDS} rounds × ${SPANS_PER_RUN} spans (ledger alone: ${LEDGER_SPANS_PER_RUN}) per batch size, ${CONCURRENCY} requests in flight, ` +
        `server ${pinned ? 'pinned to core 1, load generator to core 0' : 'unpinned (no taskset)'}; open reservations left: ${open}`,
    );
    for (const [size, { endpoint, ledger: direct, baseline, cpuPerSpan }] of results) {
      console.log(
        `  ${String(size).padStart(5)} spans/request: endpoint ${rate(endpoint)} spans/s | ledger.settle() alone ${rate(direct)} | ` +
          `bare INSERT unnest ${rate(baseline)} rows/s\n` +
          `        endpoint/ledger ${fmt(ratios(endpoint, direct), 2)} | endpoint/INSERT ${fmt(ratios(endpoint, baseline), 2)} | ` +
          `server CPU ${fmt(cpuPerSpan, 1)} µs/span`,
      );
    }
    console.log(`bench/settle: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    child.process.send('exit');
    await new Promise((resolve) => child.process.once('exit', resolve));
    await ledger.close();
    await setup.close();
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

async function perSecond(count: number, run: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await run();
  return count / ((performance.now() - t0) / 1000);
}

/** The settlement the gateway's span for this reservation asks for (cost as in encodeBody). */
function settlementOf({ id, account }: { id: string; account: string }): SettlementRequest {
  return {
    reservationId: id,
    accountId: account,
    outcome: 'completed',
    cost: 4_375,
    usage: { inputTokens: 1000, cacheReadInputTokens: 100, outputTokens: 200 },
    pricingVersion: PRICING.version,
    spanEndTime: new Date(),
  };
}

function ratios(a: number[], b: number[]): number[] {
  return a.map((x, i) => x / b[i]!);
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
