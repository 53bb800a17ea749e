/**
 * Exactly one outcome per request, whatever the order of events: random chunking, a client that
 * leaves at a random byte, an upstream that resets after a random write.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import http from 'node:http';
import { splitRandomly } from '../support/chunking.js';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { TEST_PRICING } from '../support/pricing.js';
import { anthropicStream, chatStream, responsesStream, SSE_HEADERS } from '../support/provider-streams.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

const TEXT = 'A stream long enough to be cut in many places: ' + 'lorem ipsum dolor sit amet '.repeat(20);

const APIS = {
  responses: { path: '/v1/responses', model: 'gpt-4.1', body: responsesStream(TEXT, { input: 500, output: 200 }) },
  chat: { path: '/v1/chat/completions', model: 'gpt-4o-mini', body: chatStream(TEXT, { input: 500, output: 200 }) },
  messages: { path: '/v1/messages', model: 'claude-sonnet-4-6', body: anthropicStream(TEXT, { input: 500, output: 200 }) },
} as const;

/** Posts and reads until `abortAfterBytes` (then destroys the connection) or the end. */
function request(url: string, key: string, model: string, abortAfterBytes: number | undefined, onData?: (text: string) => boolean) {
  return new Promise<void>((resolve) => {
    const req = http.request(url, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' } });
    req.on('response', (res) => {
      let seen = 0;
      let text = '';
      res.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        text += chunk.toString('latin1');
        if ((abortAfterBytes !== undefined && seen >= abortAfterBytes) || onData?.(text)) {
          req.destroy();
          resolve();
        }
      });
      res.on('end', resolve);
      res.on('error', () => resolve());
      res.on('aborted', () => resolve());
    });
    req.on('error', () => resolve());
    req.end(JSON.stringify({ model, stream: true, max_tokens: 1000 }));
  });
}

describe('exactly one outcome per request', function () {
  this.timeout(120_000);
  let upstream: Upstream;
  let gateway: TestGateway;
  let key: string;

  before(async () => {
    upstream = await startUpstream();
    gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING });
    key = await gateway.account('prop', 1_000_000_000_000);
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
  });

  it('holds for random chunking, client aborts and upstream resets', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...(Object.keys(APIS) as Array<keyof typeof APIS>)),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
        fc.option(fc.integer({ min: 1, max: 4000 }), { nil: undefined }),
        async (api, seed, resetAfterChunks, abortAfterBytes) => {
          const { path, model, body } = APIS[api];
          const chunks = splitRandomly(body, seed, 30);
          upstream.reply({ headers: SSE_HEADERS, chunks, delayMs: 1, resetAfterChunks });
          gateway.outcomes.length = 0;
          gateway.spans.reset();
          await request(`${gateway.url}${path}`, key, model, abortAfterBytes);
          const [record] = await gateway.waitForOutcomes(1);
          // Give a second outcome, if there were one, the time to show up.
          await new Promise((resolve) => setTimeout(resolve, 30));
          expect(gateway.outcomes).to.have.length(1);
          expect(gateway.spans.getFinishedSpans()).to.have.length(1);

          const terminalSent =
            resetAfterChunks === undefined || Buffer.concat(chunks.slice(0, resetAfterChunks)).length === body.length;
          const clientLeftEarly = abortAfterBytes !== undefined && abortAfterBytes < body.length;
          if (!clientLeftEarly) {
            expect(record!.outcome).to.equal(terminalSent ? 'completed' : 'upstream_error');
          } else {
            expect(record!.outcome).to.be.oneOf(['completed', 'cancelled', 'upstream_error']);
          }
          if (record!.outcome === 'completed') {
            expect(record!.usage).to.deep.include({ inputTokens: 500, outputTokens: 200 });
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a client that closes right after response.completed (Codex) is completed, with its usage', async () => {
    const body = APIS.responses.body;
    // The upstream keeps the stream open after the terminal event, as a real server may.
    upstream.reply({ headers: SSE_HEADERS, chunks: [body, Buffer.from(': trailing\n\n')], delayMs: 300 });
    gateway.outcomes.length = 0;
    await request(`${gateway.url}/v1/responses`, key, 'gpt-4.1', undefined, (text) =>
      text.includes('event: response.completed') && text.endsWith('\n\n'),
    );
    const [record] = await gateway.waitForOutcomes(1);
    expect(record!.outcome).to.equal('completed');
    expect(record!.usage).to.deep.include({ inputTokens: 500, outputTokens: 200 });
  });

  it('a client that leaves mid-stream is cancelled, and the upstream request is aborted promptly', async () => {
    const body = APIS.messages.body;
    upstream.reply({ headers: SSE_HEADERS, chunks: splitRandomly(body, 99, 30), delayMs: 20 });
    gateway.outcomes.length = 0;
    const aborted = upstream.nextAbort();
    const started = Date.now();
    await request(`${gateway.url}/v1/messages`, key, 'claude-sonnet-4-6', 200);
    await aborted;
    expect(Date.now() - started).to.be.below(1000);
    const [record] = await gateway.waitForOutcomes(1);
    expect(record!.outcome).to.equal('cancelled');
    // message_start passed before the client left: the input known so far is on the record.
    expect(record!.usage?.inputTokens).to.equal(500);
  });

  it('an upstream reset mid-stream is upstream_error with the usage known so far', async () => {
    const body = APIS.messages.body;
    const chunks = splitRandomly(body, 5, 30);
    // Cut well after message_start, well before message_stop.
    upstream.reply({ headers: SSE_HEADERS, chunks, resetAfterChunks: 20 });
    gateway.outcomes.length = 0;
    await request(`${gateway.url}/v1/messages`, key, 'claude-sonnet-4-6', undefined);
    const [record] = await gateway.waitForOutcomes(1);
    expect(record!.outcome).to.equal('upstream_error');
    expect(record!.usage?.inputTokens).to.equal(500);
  });
});

describe('gateway counters', function () {
  this.timeout(60_000);
  let upstream: Upstream;
  let gateway: TestGateway;

  before(async () => {
    upstream = await startUpstream();
    gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING });
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
  });

  async function counter(name: string): Promise<number> {
    const metric = await gateway.registry.getSingleMetric(name)!.get();
    return metric.values.reduce((sum, value) => sum + value.value, 0);
  }

  it('are the exact totals of the micro-credit amounts, not a floating-point running sum (DESIGN.md: Money)', async () => {
    const key = await gateway.account('counted', 1_000_000_000);
    const { path, model, body } = APIS.responses;
    for (let i = 0; i < 10; i++) {
      upstream.reply({ headers: SSE_HEADERS, chunks: [body] });
      await request(`${gateway.url}${path}`, key, model, undefined);
    }
    const records = await gateway.waitForOutcomes(10);
    // 500 input × 2 + 200 output × 8 = 2,600 µcr each: 10 × 0.0026 credits added one by one in
    // floating point is 0.025999999999999995, not 0.026.
    expect(records.map((record) => record.cost)).to.deep.equal(Array(10).fill(2600));
    const micro = (amounts: number[]) => amounts.reduce((sum, amount) => sum + amount, 0) / 1e6;
    expect(await counter('tollgate_cost_credits_total')).to.equal(micro(records.map((record) => record.cost!)));
    expect(await counter('tollgate_reserved_credits_total')).to.equal(micro(records.map((record) => record.reserved)));
  });

  it('count every request, its tokens and its outcome, and start again from 0 after registry.resetMetrics()', async () => {
    const key = await gateway.account('tallied', 1_000_000_000);
    const { path, model, body } = APIS.responses;
    const series = async (name: string) =>
      (await gateway.registry.getSingleMetric(name)!.get()).values.filter((value) => value.labels.model === model).map((value) => [value.labels, value.value]);
    const seen = (await gateway.waitForOutcomes(0)).length;
    gateway.registry.resetMetrics();
    for (let i = 0; i < 3; i++) {
      upstream.reply({ headers: SSE_HEADERS, chunks: [body] });
      await request(`${gateway.url}${path}`, key, model, undefined);
    }
    await gateway.waitForOutcomes(seen + 3);
    expect(await series('tollgate_requests_total')).to.deep.equal([[{ provider: 'openai', model, outcome: 'completed' }, 3]]);
    expect(await series('tollgate_usage_tokens_total')).to.deep.equal([
      [{ provider: 'openai', model, type: 'input' }, 1500],
      [{ provider: 'openai', model, type: 'output' }, 600],
      [{ provider: 'openai', model, type: 'cache_read' }, 0],
      [{ provider: 'openai', model, type: 'reasoning' }, 0],
    ]);
    expect(await series('tollgate_overruns_total')).to.deep.equal([]);
    gateway.registry.resetMetrics();
    expect(await series('tollgate_requests_total')).to.deep.equal([]);
    expect(await counter('tollgate_cost_credits_total')).to.equal(0);
    upstream.reply({ headers: SSE_HEADERS, chunks: [body] });
    await request(`${gateway.url}${path}`, key, model, undefined);
    await gateway.waitForOutcomes(seen + 4);
    expect(await series('tollgate_requests_total')).to.deep.equal([[{ provider: 'openai', model, outcome: 'completed' }, 1]]);
    expect(await counter('tollgate_cost_credits_total')).to.equal(0.0026);
  });
});
