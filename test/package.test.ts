/**
 * The package as a user gets it: `npm pack` (whose `prepare` script builds dist/), the tarball
 * installed into a fresh project beside express 5, then used from plain JavaScript, type-checked
 * from TypeScript, and run as the `tollgate` command. Needs the npm registry (or a warm npm
 * cache); skipped, saying why, when npm cannot reach it.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

const run = (command: string, args: string[], cwd: string) =>
  promisify(execFile)(command, args, { cwd, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, NO_COLOR: '1' } });

/**
 * Plain JavaScript, as the README mounts it: the middleware in an Express app on an embedded
 * ledger, one streamed Responses request through it to a fake upstream.
 */
const CONSUMER_MJS = `
import assert from 'node:assert/strict';
import http from 'node:http';
import express from 'express';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { expressServerClasses, tollgate } from 'tollgate';
import { openLedger } from 'tollgate/ledger';
import { createSettlementServer } from 'tollgate/collector';

const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve('http://127.0.0.1:' + server.address().port)));
const sse = (type, body, sequence) => 'event: ' + type + '\\ndata: ' + JSON.stringify({ type, sequence_number: sequence, ...body }) + '\\n\\n';

const usage = { input_tokens: 1200, input_tokens_details: { cached_tokens: 0 }, output_tokens: 300, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 1500 };
const response = { id: 'resp_1', object: 'response', model: 'gpt-4.1-2025-04-14' };
const part = { item_id: 'msg_1', output_index: 0, content_index: 0 };
const events = [
  sse('response.created', { response: { ...response, status: 'in_progress', usage: null } }, 0),
  sse('response.output_text.delta', { ...part, delta: 'Héllo' }, 1),
  sse('response.output_text.delta', { ...part, delta: ', world' }, 2),
  sse('response.completed', { response: { ...response, status: 'completed', usage } }, 3),
];
const upstream = http.createServer(async (req, res) => {
  for await (const _ of req);
  res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8' });
  for (const event of events) {
    res.write(event);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  res.end();
});
const upstreamUrl = await listen(upstream);

const INITIAL = 1_000_000;
const ledger = await openLedger('memory://');
await ledger.createAccount('alice', INITIAL);
await ledger.addKey('alice', 'tg-alice-key');
const spans = new InMemorySpanExporter();
const outcomes = [];
const metering = tollgate({
  ledger,
  openaiUpstream: upstreamUrl,
  tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }),
  onOutcome: (record) => outcomes.push(record),
});
const app = express();
app.use(metering);
const gateway = http.createServer(expressServerClasses(app), app);
const gatewayUrl = await listen(gateway);

const reply = await fetch(gatewayUrl + '/v1/responses', {
  method: 'POST',
  headers: { authorization: 'Bearer tg-alice-key', 'content-type': 'application/json' },
  body: JSON.stringify({ model: 'gpt-4.1', input: 'hi', stream: true, max_output_tokens: 1000 }),
});
assert.equal(reply.status, 200);
assert.equal(reply.headers.get('content-type'), 'text/event-stream; charset=utf-8');
assert.equal(Buffer.from(await reply.arrayBuffer()).toString('utf8'), events.join(''), 'the stream reaches the client byte for byte');

for (let waited = 0; outcomes.length === 0; waited += 10) {
  assert.ok(waited < 5000, 'no outcome within 5 s');
  await new Promise((resolve) => setTimeout(resolve, 10));
}
const [outcome] = outcomes;
assert.equal(outcome.outcome, 'completed');
assert.deepEqual(outcome.usage, { inputTokens: 1200, outputTokens: 300, cacheReadInputTokens: 0, reasoningOutputTokens: 0 });
// gpt-4.1 in the built-in table: 2 and 8 credits per 1M input and output tokens.
assert.equal(outcome.cost, 1200 * 2 + 300 * 8);

const [span] = spans.getFinishedSpans();
assert.equal(span.attributes['tollgate.reservation.id'], outcome.reservationId);
assert.equal(span.attributes['tollgate.account.id'], 'alice');
assert.equal(span.attributes['gen_ai.usage.output_tokens'], 300);

// Until settlement, the account holds the reservation.
const held = await ledger.account('alice');
assert.deepEqual(held, { accountId: 'alice', balance: INITIAL, held: outcome.reserved, available: INITIAL - outcome.reserved });

// Settled as the settlement processor settles a billing span. (createSettlementServer needs the
// gateway's PricingTable, and the package exports no way to build one, so the span's figures go
// to the public Ledger API directly.)
assert.equal(typeof createSettlementServer, 'function');
const [settled] = await ledger.settle([{
  reservationId: outcome.reservationId,
  accountId: 'alice',
  outcome: outcome.outcome,
  cost: outcome.cost,
  usage: { input_tokens: 1200, output_tokens: 300 },
  pricingVersion: span.attributes['tollgate.pricing.version'],
  spanEndTime: new Date(),
}], 'cap');
assert.equal(settled.result, 'settled');
const charged = await ledger.account('alice');
assert.deepEqual(charged, { accountId: 'alice', balance: INITIAL - outcome.cost, held: 0, available: INITIAL - outcome.cost });

metering.close();
gateway.close();
upstream.close();
await ledger.close();
console.log(JSON.stringify({ charged: outcome.cost, reserved: outcome.reserved }));
`;

/** TypeScript: the public types resolve under NodeNext, and they are types, not `any`. */
const CONSUMER_TS = `
import express from 'express';
import { tollgate, type OutcomeRecord, type TollgateOptions } from 'tollgate';
import { openLedger, type Ledger } from 'tollgate/ledger';

const ledger: Ledger = await openLedger('memory://');
const seen: OutcomeRecord[] = [];
const options: TollgateOptions = {
  ledger,
  openaiUpstream: 'http://127.0.0.1:9',
  onOutcome: (record) => {
    seen.push(record);
  },
};
express().use(tollgate(options));
export const cost: number | undefined = seen[0]?.cost;
export const outcome: 'completed' | 'incomplete' | 'failed' | 'cancelled' | 'upstream_error' | undefined = seen[0]?.outcome;
// The README's group commit counters, on the ledger openLedger() gives.
export const groups: number = (await openLedger('memory://', { maxReserveBatch: 64 })).reserveStats().statements;

// @ts-expect-error an option the middleware does not have
export const wrong: TollgateOptions = { ledger, notAnOption: true };
`;

const TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    noEmit: true,
    // As `tsc --init` sets it. Checking the libraries' declarations too would fail on PGlite's,
    // which need @types/emscripten, and on dist/ledger/postgres.d.ts, which needs @types/pg.
    skipLibCheck: true,
    types: ['node'],
  },
  files: ['consumer.ts'],
};

interface PackResult {
  filename: string;
  size: number;
  entryCount: number;
  files: Array<{ path: string }>;
}

describe('the npm package', function () {
  // npm pack builds dist/, npm install fetches the dependencies: minutes on a slow network.
  this.timeout(300_000);

  let project: string;
  let packed: PackResult;

  before(async () => {
    project = await mkdtemp(join(tmpdir(), 'tollgate-package-'));
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', project], ROOT);
    [packed] = JSON.parse(stdout) as PackResult[];
  });

  after(async () => {
    if (project) await rm(project, { recursive: true, force: true });
  });

  it('ships the build, the migrations and the README, and nothing of the sources or tests', () => {
    const paths = packed.files.map((file) => file.path);
    for (const path of [
      'package.json',
      'README.md',
      'ledger/migrations/001_ledger.sql',
      'dist/plugin/index.js',
      'dist/plugin/index.d.ts',
      'dist/ledger/index.js',
      'dist/ledger/index.d.ts',
      'dist/collector/index.js',
      'dist/collector/index.d.ts',
      'dist/cli/main.js',
      'dist/cli/demo.js',
      'dist/cli/simulator.js',
    ]) {
      expect(paths, path).to.include(path);
    }
    const strays = paths.filter((path) => (path.endsWith('.ts') && !path.endsWith('.d.ts')) || /^(dist\/)?(test|bench|dashboards)\//.test(path));
    expect(strays).to.deep.equal([]);
  });

  describe('installed into a fresh project', () => {
    before(async function () {
      await writeFile(join(project, 'package.json'), JSON.stringify({ name: 'tollgate-consumer', private: true, type: 'module' }));
      const dependencies = ['express@5', '@opentelemetry/api', '@opentelemetry/sdk-trace-base', '@types/express', '@types/node@20'];
      try {
        await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', join(project, packed.filename), ...dependencies], project);
      } catch (error) {
        // Without the registry npm fails in many ways (ERESOLVE among them): ask it directly.
        const reachable = await run('npm', ['ping', '--fetch-retries=0', '--fetch-timeout=15000'], project).then(() => true, () => false);
        if (reachable) throw error;
        console.warn('      skipped: npm cannot reach its registry to install the dependencies of the package');
        this.skip();
      }
    });

    it('mounts in an Express app from plain JavaScript: bytes untouched, usage extracted, credits held then charged', async () => {
      await writeFile(join(project, 'consumer.mjs'), CONSUMER_MJS);
      const { stdout } = await run(process.execPath, ['consumer.mjs'], project);
      expect(JSON.parse(stdout)).to.include({ charged: 4800 });
    });

    it('type-checks from TypeScript with moduleResolution NodeNext', async () => {
      await writeFile(join(project, 'consumer.ts'), CONSUMER_TS);
      await writeFile(join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG));
      // tsc reports type errors on stdout and exits non-zero: show them if it fails.
      await run(process.execPath, [TSC, '-p', 'tsconfig.json'], project).catch((error: { stdout?: string }) => {
        throw new Error(`tsc failed:\n${error.stdout}`);
      });
    });

    it('installs an executable `tollgate` command: npx tollgate --help, npx tollgate demo', async () => {
      const bin = await stat(join(project, 'node_modules', 'tollgate', 'dist', 'cli', 'main.js'));
      expect(bin.mode & 0o111, 'executable bits').to.not.equal(0);
      const help = await run('npx', ['--no-install', 'tollgate', '--help'], project);
      expect(help.stdout).to.match(/^Usage: tollgate <command>/);
      expect(help.stdout).to.include('demo');
      const demo = await run('npx', ['--no-install', 'tollgate', 'demo', '--requests', '20', '--json'], project);
      expect((JSON.parse(demo.stdout) as { requests: number }).requests).to.equal(20);
    });
  });
});
