/**
 * The byte path holds whatever the client and the telemetry do: backpressure bounds memory for a
 * slow client, sampling never drops a billing span, and a throwing span processor breaks nothing.
 */
import { expect } from 'chai';
import http from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import express from 'express';
import type { AddressInfo } from 'node:net';
import { openLedger } from '../../ledger/index.js';
import { tollgate } from '../../plugin/index.js';
import { startGateway } from '../support/gateway.js';
import { post, sha256 } from '../support/http.js';
import { TEST_PRICING } from '../support/pricing.js';
import { responsesStream, SSE_HEADERS } from '../support/provider-streams.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Serves `app` on a loopback port of its own. */
async function listen(app: express.Express): Promise<{ server: http.Server; url: string }> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describe('backpressure', function () {
  this.timeout(60_000);

  it('a client that stops reading holds the upstream back instead of filling the gateway memory', async () => {
    const upstream = await startUpstream();
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING });
    try {
      const key = await gateway.account('slow', 1_000_000_000);
      // 256 MiB of SSE in 64 KiB writes (the same buffer reused: the test itself stays small).
      const frame = Buffer.from(`data: ${'x'.repeat(64 * 1024 - 9)}\n\n`);
      const total = 4096 * frame.length;
      upstream.reply({ headers: SSE_HEADERS, chunks: Array.from({ length: 4096 }, () => frame) });

      let received = 0;
      await new Promise<void>((resolve, reject) => {
        const req = http.request(`${gateway.url}/v1/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        });
        req.on('response', async (res) => {
          res.pause();
          await sleep(1500);
          // Loopback socket buffers and stream high-water marks account for a few MiB; the whole
          // response is 256 MiB.
          const heldBack = upstream.bytesWritten();
          try {
            expect(heldBack).to.be.below(32 * 1024 * 1024);
          } catch (error) {
            reject(error);
            return;
          }
          res.on('data', (chunk: Buffer) => (received += chunk.length));
          res.on('end', resolve);
          res.resume();
        });
        req.on('error', reject);
        req.end(JSON.stringify({ model: 'gpt-4.1', stream: true }));
      });
      expect(received).to.equal(total);
      await gateway.waitForOutcomes(1);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('memory', function () {
  it("a kept-alive upstream connection does not keep the request that opened it", async () => {
    const upstream = await startUpstream();
    const ledger = await openLedger('memory://');
    await ledger.createAccount('app', 1_000_000_000);
    const key = await ledger.createKey('app');
    const body = responsesStream('kept', { input: 10, output: 3 });
    upstream.reply({ headers: SSE_HEADERS, chunks: [body] });
    let finished = 0;
    const middleware = tollgate({ ledger, pricing: TEST_PRICING, openaiUpstream: upstream.url, logger: () => {}, onOutcome: () => finished++ });
    const responses: Array<WeakRef<http.ServerResponse>> = [];
    const app = express();
    app.use((_req, res, next) => {
      responses.push(new WeakRef(res));
      next();
    });
    app.use(middleware);
    const { server, url } = await listen(app);
    try {
      // One after the other: all three go over the one upstream connection the first opened.
      for (let i = 0; i < 3; i++) {
        const res = await post(`${url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', stream: true }), { authorization: `Bearer ${key}` });
        expect(sha256(res.body)).to.equal(sha256(body));
      }
      expect(new Set(upstream.received.map((request) => request.remotePort)).size).to.equal(1);
      while (finished < 3) await sleep(10);
      server.closeAllConnections();
      await sleep(50);
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as () => void;
      gc();
      await sleep(10);
      gc();
      // The agent held the options of the request that opened the connection, and through them
      // that request's metering state, response and all, for as long as the connection lived.
      expect(responses[0]!.deref()).to.equal(undefined);
    } finally {
      middleware.close();
      await new Promise((resolve) => server.close(resolve));
      await ledger.close();
      await upstream.close();
    }
  });
});

describe('billing spans and sampling', function () {
  let upstream: Upstream;
  const contextManager = new AsyncLocalStorageContextManager();
  const body = responsesStream('sampled or not', { input: 3, output: 4 });

  before(async () => {
    upstream = await startUpstream();
    upstream.reply({ headers: SSE_HEADERS, chunks: [body] });
    context.setGlobalContextManager(contextManager.enable());
  });
  after(async () => {
    context.disable();
    trace.disable();
    await upstream.close();
  });

  it('the application samples at ratio 0, and every billing span is still recorded, as a linked root', async () => {
    const appProvider = new BasicTracerProvider({ sampler: new TraceIdRatioBasedSampler(0) });
    trace.setGlobalTracerProvider(appProvider);
    const ledger = await openLedger('memory://');
    await ledger.createAccount('app', 10_000_000);
    const key = await ledger.createKey('app');
    const billing = new InMemorySpanExporter();
    const billingProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(billing)] });
    const middleware = tollgate({ ledger, pricing: TEST_PRICING, openaiUpstream: upstream.url, tracerProvider: billingProvider });
    const app = express();
    let appSpanId = '';
    // The application's own request span, sampled out by its ratio-0 sampler.
    app.use((_req, _res, next) => {
      const span = trace.getTracer('app').startSpan('app request');
      appSpanId = span.spanContext().spanId;
      context.with(trace.setSpan(context.active(), span), next);
    });
    app.use(middleware);
    const { server, url } = await listen(app);
    try {
      for (let i = 0; i < 10; i++) {
        const res = await post(`${url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', stream: true }), { authorization: `Bearer ${key}` });
        expect(sha256(res.body)).to.equal(sha256(body));
      }
      await sleep(50);
      const spans = billing.getFinishedSpans();
      expect(spans).to.have.length(10);
      const last = spans[9]!;
      expect(last.parentSpanContext).to.equal(undefined);
      expect(last.links[0]!.context.spanId).to.equal(appSpanId);
      expect(await middleware.registry.getSingleMetricAsString('tollgate_billing_spans_unrecorded_total')).to.match(/ 0$/m);
    } finally {
      middleware.close();
      server.close();
      await ledger.close();
    }
  });

  it('a billing span given to a sampling provider is counted as unrecorded, and the request goes on', async () => {
    const sampled = new BasicTracerProvider({ sampler: new TraceIdRatioBasedSampler(0) });
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING, tracerProvider: sampled });
    try {
      const key = await gateway.account('dropped', 10_000_000);
      const res = await post(`${gateway.url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', stream: true }), { authorization: `Bearer ${key}` });
      expect(res.status).to.equal(200);
      await gateway.waitForOutcomes(1);
      expect(await gateway.registry.getSingleMetricAsString('tollgate_billing_spans_unrecorded_total')).to.match(/ 1$/m);
    } finally {
      await gateway.close();
    }
  });

  it('a span processor that throws breaks nothing: same bytes, same outcome, the error counted', async () => {
    const throwing: SpanProcessor = {
      onStart: () => {
        throw new Error('exporter exploded');
      },
      onEnd: () => {
        throw new Error('exporter exploded');
      },
      forceFlush: async () => {},
      shutdown: async () => {},
    };
    const provider = new BasicTracerProvider({ spanProcessors: [throwing] });
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING, tracerProvider: provider });
    try {
      const key = await gateway.account('faulty', 10_000_000);
      const res = await post(`${gateway.url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', stream: true }), { authorization: `Bearer ${key}` });
      expect(sha256(res.body)).to.equal(sha256(body));
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('completed');
      const errors = await gateway.registry.getSingleMetric('tollgate_telemetry_errors_total')!.get();
      expect(errors.values[0]!.value).to.be.at.least(1);
    } finally {
      await gateway.close();
    }
  });

  it('a logger that throws and an async onOutcome that rejects break nothing (the rejection ended the process)', async () => {
    const unhandled: unknown[] = [];
    const record = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', record);
    const ledger = await openLedger('memory://');
    await ledger.createAccount('careless', 10_000_000);
    const key = await ledger.createKey('careless');
    const outcomes: string[] = [];
    const throwing: SpanProcessor = {
      onStart: () => {
        throw new Error('exporter exploded');
      },
      onEnd: () => {},
      forceFlush: async () => {},
      shutdown: async () => {},
    };
    const options = {
      ledger,
      pricing: TEST_PRICING,
      openaiUpstream: upstream.url,
      tracerProvider: new BasicTracerProvider({ spanProcessors: [throwing] }),
      logger: () => {
        throw new Error('log sink down');
      },
      onOutcome: async (outcome: { outcome: string }) => {
        outcomes.push(outcome.outcome);
        throw new Error('hook failed later');
      },
    };
    // Two instances on one registry share its metrics (prom-client refuses a name twice).
    const first = tollgate(options);
    const second = tollgate({ ...options, registry: first.registry });
    const app = express().use(second);
    const { server, url } = await listen(app);
    try {
      const res = await post(`${url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', stream: true }), { authorization: `Bearer ${key}` });
      expect(sha256(res.body)).to.equal(sha256(body));
      await second.drain(1000);
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(outcomes).to.deep.equal(['completed']);
      expect(unhandled).to.deep.equal([]);
    } finally {
      process.off('unhandledRejection', record);
      server.close();
      first.close();
      second.close();
      await ledger.close();
    }
  });
});
