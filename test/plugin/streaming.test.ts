/**
 * End to end through the middleware with the official SDKs: a fake upstream on loopback replays
 * provider streams split at random byte points with delays; the client gets the upstream's bytes
 * (sha256-equal), and the billing span and metrics carry the exact usage.
 */
import { expect } from 'chai';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import http from 'node:http';
import { createGzip, gzipSync } from 'node:zlib';
import {
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_RESPONSE_ID,
  ATTR_GEN_AI_RESPONSE_MODEL,
  ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  ATTR_GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
  ATTR_TOLLGATE_ACCOUNT_ID,
  ATTR_TOLLGATE_OUTCOME,
  ATTR_TOLLGATE_RESERVATION_AMOUNT,
  ATTR_TOLLGATE_RESERVATION_ID,
  ATTR_TOLLGATE_USAGE_SOURCE,
} from '../../plugin/semconv.js';
import { splitRandomly } from '../support/chunking.js';
import { EXPRESS_MAJORS, startGateway, type TestGateway } from '../support/gateway.js';
import { post, sha256 } from '../support/http.js';
import { TEST_PRICING } from '../support/pricing.js';
import {
  anthropicStream,
  chatStream,
  JSON_HEADERS,
  responsesObject,
  responsesStream,
  SSE_HEADERS,
} from '../support/provider-streams.js';
import { startUpstream, type Upstream } from '../support/upstream.js';
import { readFixture } from '../usage/replay.js';

const TEXT = 'Tollgate meters every token — even the multi-byte ones: 日本語テキスト, emoji 🚀🎉, ünïcödé.';

async function counter(gateway: TestGateway, name: string, labels: Record<string, string>): Promise<number> {
  const metric = await gateway.registry.getSingleMetric(name)?.get();
  const match = metric?.values.find((value) =>
    Object.entries(labels).every(([key, expected]) => value.labels[key] === expected),
  );
  return match?.value ?? 0;
}

for (const major of EXPRESS_MAJORS) {
  describe(`streaming through tollgate on Express ${major}`, function () {
    let upstream: Upstream;
    let gateway: TestGateway;
    let key: string;

    before(async () => {
      upstream = await startUpstream();
      gateway = await startGateway(upstream.url, major, { pricing: TEST_PRICING });
      key = await gateway.account('alice', 100_000_000);
    });
    after(async () => {
      await gateway.close();
      await upstream.close();
    });
    beforeEach(() => {
      gateway.spans.reset();
      gateway.outcomes.length = 0;
      upstream.received.length = 0;
    });

    it('Responses: the openai SDK streams it, the bytes are the upstream bytes, usage is exact', async () => {
      // 1200 input of which 300 cached; 450 output of which 100 reasoning
      const body = responsesStream(TEXT, { input: 1200, cached: 300, output: 450, reasoning: 100 });
      upstream.reply({ headers: SSE_HEADERS, chunks: splitRandomly(body, 7, 40), delayMs: 1 });

      const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
      const stream = await client.responses.create({ model: 'gpt-4.1', input: 'Say hi', stream: true });
      let text = '';
      let last = '';
      for await (const event of stream) {
        if (event.type === 'response.output_text.delta') text += event.delta;
        last = event.type;
      }
      expect(text).to.equal(TEXT);
      expect(last).to.equal('response.completed');

      const raw = await post(`${gateway.url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', input: 'hi', stream: true }), {
        authorization: `Bearer ${key}`,
      });
      expect(raw.status).to.equal(200);
      expect(raw.headers['content-type']).to.equal('text/event-stream');
      // Framed as chunks on a connection that stays open, whatever hop-by-hop headers the upstream sent.
      expect(raw.headers['transfer-encoding']).to.equal('chunked');
      expect(raw.headers).not.to.have.property('keep-alive');
      expect(sha256(raw.body)).to.equal(sha256(body));

      const [first] = await gateway.waitForOutcomes(2);
      expect(first!.outcome).to.equal('completed');
      // non-cached 900 × 2 + cached 300 × 0.5 + output 450 × 8 = 1800 + 150 + 3600 = 5550 µcr
      expect(first!.cost).to.equal(5550);
      const span = gateway.spans.getFinishedSpans()[0]!;
      expect(span.attributes).to.include({
        [ATTR_GEN_AI_PROVIDER_NAME]: 'openai',
        [ATTR_GEN_AI_REQUEST_MODEL]: 'gpt-4.1',
        [ATTR_GEN_AI_RESPONSE_MODEL]: 'gpt-4.1-2025-04-14',
        [ATTR_GEN_AI_RESPONSE_ID]: 'resp_0123456789',
        [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: 1200,
        [ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS]: 300,
        [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: 450,
        [ATTR_GEN_AI_USAGE_REASONING_OUTPUT_TOKENS]: 100,
        [ATTR_TOLLGATE_ACCOUNT_ID]: 'alice',
        [ATTR_TOLLGATE_OUTCOME]: 'completed',
        [ATTR_TOLLGATE_USAGE_SOURCE]: 'reported',
      });
      expect(span.attributes[ATTR_TOLLGATE_RESERVATION_ID]).to.equal(first!.reservationId);
      expect(span.attributes[ATTR_TOLLGATE_RESERVATION_AMOUNT]).to.equal(first!.reserved);
      expect(span.attributes).not.to.have.property(ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS);
      expect(await counter(gateway, 'tollgate_usage_tokens_total', { type: 'input', model: 'gpt-4.1' })).to.equal(2400);
      expect(await counter(gateway, 'tollgate_requests_total', { outcome: 'completed' })).to.be.at.least(2);
    });

    it('Chat Completions with include_usage: the SDK reads it, the final usage chunk is billed', async () => {
      // 800 prompt of which 200 cached; 120 completion
      const body = chatStream(TEXT, { input: 800, cached: 200, output: 120 });
      upstream.reply({ headers: SSE_HEADERS, chunks: splitRandomly(body, 11, 30), delayMs: 1 });
      const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
      const stream = await client.chat.completions.create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'hi' }],
        stream: true,
        stream_options: { include_usage: true },
      });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
      expect(text).to.equal(TEXT);
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('completed');
      expect(record!.usage).to.deep.equal({ inputTokens: 800, cacheReadInputTokens: 200, outputTokens: 120, reasoningOutputTokens: 0 });
      // 600 × 0.15 + 200 × 0.075 + 120 × 0.6 = 90 + 15 + 72 = 177 µcr
      expect(record!.cost).to.equal(177);
    });

    it('Chat Completions without include_usage: no usage, counted as missing, the bytes untouched', async () => {
      const body = chatStream(TEXT, undefined);
      upstream.reply({ headers: SSE_HEADERS, chunks: splitRandomly(body, 12, 20) });
      const before = await counter(gateway, 'tollgate_usage_missing_total', { model: 'gpt-4o-mini' });
      const raw = await post(
        `${gateway.url}/v1/chat/completions`,
        JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], stream: true }),
        { authorization: `Bearer ${key}` },
      );
      expect(sha256(raw.body)).to.equal(sha256(body));
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('completed');
      expect(record!.usage).to.equal(undefined);
      expect(gateway.spans.getFinishedSpans()[0]!.attributes[ATTR_TOLLGATE_USAGE_SOURCE]).to.equal('missing');
      expect(await counter(gateway, 'tollgate_usage_missing_total', { model: 'gpt-4o-mini' })).to.equal(before + 1);
    });

    it('Anthropic: an error event mid-stream is failed and settles at the reservation, not at the placeholder output count', async () => {
      const body = readFixture('anthropic-error.sse');
      upstream.reply({ headers: SSE_HEADERS, chunks: splitRandomly(body, 5, 20) });
      const raw = await post(`${gateway.url}/v1/messages`, JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 64, stream: true }), { 'x-api-key': key });
      expect(sha256(raw.body)).to.equal(sha256(body));
      const [record] = await gateway.waitForOutcomes(1);
      // message_start says output_tokens 1; billing that as the usage charged one token.
      expect(record).to.deep.include({ outcome: 'failed', usageSource: 'missing', cost: undefined });
      expect(record!.usage).to.deep.equal({ inputTokens: 6258, cacheReadInputTokens: 2048, cacheCreationInputTokens: 0 });
    });

    it('Anthropic Messages (Claude Code style ?beta=true): input normalised to include the cache', async () => {
      // wire: input 1200 + cache read 300 + cache creation 100 → GenAI input 1600; output 250
      const body = anthropicStream(TEXT, { input: 1600, cached: 300, cacheCreation: 100, output: 250 });
      upstream.reply({ headers: SSE_HEADERS, chunks: splitRandomly(body, 13, 40), delayMs: 1 });
      const client = new Anthropic({ baseURL: gateway.url, apiKey: key, maxRetries: 0 });
      const stream = client.messages.stream({ model: 'claude-sonnet-4-6', max_tokens: 1024, messages: [{ role: 'user', content: 'hi' }] });
      const message = await stream.finalMessage();
      expect(message.content[0]).to.deep.include({ type: 'text', text: TEXT });
      expect(upstream.received[0]!.url).to.equal('/v1/messages');
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.usage).to.deep.equal({ inputTokens: 1600, cacheReadInputTokens: 300, cacheCreationInputTokens: 100, outputTokens: 250 });
      // 1200 × 3 + 300 × 0.3 + 100 × 3.75 + 250 × 15 = 3600 + 90 + 375 + 3750 = 7815 µcr
      expect(record!.cost).to.equal(7815);

      const raw = await post(`${gateway.url}/v1/messages?beta=true`, JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 64, stream: true }), {
        'x-api-key': key,
        'anthropic-beta': 'interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14',
      });
      expect(sha256(raw.body)).to.equal(sha256(body));
      const forwarded = upstream.received[1]!;
      expect(forwarded.url).to.equal('/v1/messages?beta=true');
      expect(forwarded.headers['anthropic-beta']).to.equal('interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14');
      expect(forwarded.headers['x-api-key']).to.equal('sk-upstream-anthropic');
    });

    it('non-streaming JSON bodies carry real money too', async () => {
      const object = responsesObject('short answer', { input: 10, output: 5 }, 'incomplete');
      const body = Buffer.from(JSON.stringify(object));
      upstream.reply({ headers: JSON_HEADERS, chunks: splitRandomly(body, 3, 5) });
      const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
      const response = await client.responses.create({ model: 'gpt-4.1', input: 'hi' });
      expect(response.status).to.equal('incomplete');
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('incomplete');
      // 10 × 2 + 5 × 8 = 60 µcr
      expect(record!.cost).to.equal(60);
    });

    it('forwards the body byte for byte, swaps the key, drops hop-by-hop headers', async () => {
      upstream.reply({ headers: JSON_HEADERS, chunks: [Buffer.from(JSON.stringify(responsesObject('x', { input: 1, output: 1 })))] });
      // Odd spacing and key order that a re-serialisation would lose.
      const sent = Buffer.from('{ "model":"gpt-4.1",  "input" : "héllo",\n"metadata":{"b":1,"a":2} }');
      await post(`${gateway.url}/v1/responses`, sent, {
        authorization: `Bearer ${key}`,
        'x-custom-trace': 'abc',
        'keep-alive': 'timeout=5',
        'x-drop-me': 'hop',
        connection: 'keep-alive, x-drop-me',
        'accept-encoding': 'gzip, deflate, br, zstd',
      });
      const received = upstream.received[0]!;
      expect(sha256(received.body)).to.equal(sha256(sent));
      expect(received.headers.authorization).to.equal('Bearer sk-upstream-openai');
      expect(received.headers['x-custom-trace']).to.equal('abc');
      expect(received.headers).not.to.have.property('keep-alive');
      expect(received.headers).not.to.have.property('x-drop-me');
      expect(received.headers['accept-encoding']).to.equal('gzip, deflate, br');
      // express-http-proxy's default would add one.
      expect(received.headers).not.to.have.property('accept-charset');
      await gateway.waitForOutcomes(1);
    });

    it('answers Expect: 100-continue itself and forwards the body without it (curl sends it for bodies over 1 MB; it was a 502)', async () => {
      upstream.reply({ headers: JSON_HEADERS, chunks: [Buffer.from(JSON.stringify(responsesObject('x', { input: 1, output: 1 })))] });
      const sent = Buffer.from(JSON.stringify({ model: 'gpt-4.1', input: 'x'.repeat(2000) }));
      const status = await new Promise<number | undefined>((resolve, reject) => {
        const req = http.request(`${gateway.url}/v1/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': sent.length, expect: '100-continue' },
        });
        req.on('continue', () => req.end(sent));
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode));
        });
        req.on('error', reject);
      });
      expect(status).to.equal(200);
      const received = upstream.received[0]!;
      expect(received.headers).not.to.have.property('expect');
      expect(sha256(received.body)).to.equal(sha256(sent));
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('completed');
    });

    it('asks upstream only for codings the client accepts: one refused with q=0 stays out', async () => {
      upstream.reply({ headers: JSON_HEADERS, chunks: [Buffer.from(JSON.stringify(responsesObject('x', { input: 1, output: 1 })))] });
      await post(`${gateway.url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', input: 'hi' }), {
        authorization: `Bearer ${key}`,
        'accept-encoding': 'gzip;q=0, br;q=0.5, deflate; q=0.000',
      });
      expect(upstream.received[0]!.headers['accept-encoding']).to.equal('br');
      await gateway.waitForOutcomes(1);
    });

    it('a gzip-compressed stream reaches the client compressed and its usage is still read', async () => {
      const plain = responsesStream(TEXT, { input: 40, output: 20 });
      const compressed = gzipSync(plain);
      upstream.reply({ headers: { ...SSE_HEADERS, 'content-encoding': 'gzip' }, chunks: splitRandomly(compressed, 5, 10) });
      const raw = await post(`${gateway.url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', input: 'hi', stream: true }), {
        authorization: `Bearer ${key}`,
        'accept-encoding': 'gzip',
      });
      expect(raw.headers['content-encoding']).to.equal('gzip');
      expect(sha256(raw.body)).to.equal(sha256(compressed));
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.usage).to.include({ inputTokens: 40, outputTokens: 20 });
    });

    it('a client that leaves a gzip-compressed stream after its terminal event (Codex) counts no parse error', async () => {
      // The upstream flushes the whole stream, then keeps it open: the client leaves in between,
      // so the gzip data stops before its end, as every stream cut short does.
      const gzip = createGzip();
      const parts: Buffer[] = [];
      gzip.on('data', (part: Buffer) => parts.push(part));
      gzip.write(responsesStream(TEXT, { input: 40, output: 20 }));
      await new Promise<void>((resolve) => gzip.flush(() => resolve()));
      const flushed = Buffer.concat(parts.splice(0));
      gzip.end(': trailing\n\n');
      await new Promise((resolve) => gzip.on('end', resolve));
      upstream.reply({ headers: { ...SSE_HEADERS, 'content-encoding': 'gzip' }, chunks: [flushed, Buffer.concat(parts)], delayMs: 300 });
      const before = await counter(gateway, 'tollgate_usage_parse_errors_total', { provider: 'openai' });
      await new Promise<void>((resolve, reject) => {
        const req = http.request(`${gateway.url}/v1/responses`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'accept-encoding': 'gzip' },
        });
        req.on('response', (res) =>
          res.once('data', () =>
            setTimeout(() => {
              req.destroy();
              resolve();
            }, 100),
          ),
        );
        req.on('error', reject);
        req.end(JSON.stringify({ model: 'gpt-4.1', input: 'hi', stream: true }));
      });
      const [record] = await gateway.waitForOutcomes(1);
      expect(record).to.deep.include({ outcome: 'completed', usageSource: 'reported' });
      expect(await counter(gateway, 'tollgate_usage_parse_errors_total', { provider: 'openai' })).to.equal(before);
    });

    it('reuses upstream connections (keep-alive agent)', async () => {
      upstream.reply({ headers: JSON_HEADERS, chunks: [Buffer.from(JSON.stringify(responsesObject('x', { input: 1, output: 1 })))] });
      for (let i = 0; i < 5; i++) {
        await post(`${gateway.url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', input: 'hi' }), { authorization: `Bearer ${key}` });
      }
      const ports = new Set(upstream.received.map((request) => request.remotePort));
      expect(ports.size).to.equal(1);
      expect(upstream.received[0]!.headers.connection).to.equal('keep-alive');
      await gateway.waitForOutcomes(5);
    });
  });
}

describe("chatUsage 'inject'", function () {
  let upstream: Upstream;
  let gateway: TestGateway;
  let key: string;

  before(async () => {
    upstream = await startUpstream();
    gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING, chatUsage: 'inject' });
    key = await gateway.account('alice', 100_000_000);
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
  });
  beforeEach(() => {
    gateway.outcomes.length = 0;
    upstream.received.length = 0;
  });

  it('appends stream_options to a request without it, every other byte as sent (a seed past 2^53 included), and bills the usage', async () => {
    const body = chatStream(TEXT, { input: 800, cached: 200, output: 120 });
    upstream.reply({ headers: SSE_HEADERS, chunks: splitRandomly(body, 11, 30) });
    const sent = '{ "model": "gpt-4o-mini",\n  "seed": 12345678901234567891, "messages": [{"role": "user", "content": "hi"}], "stream": true }\n';
    const raw = await post(`${gateway.url}/v1/chat/completions`, sent, { authorization: `Bearer ${key}` });
    expect(sha256(raw.body)).to.equal(sha256(body));
    expect(upstream.received[0]!.body.toString()).to.equal(
      '{ "model": "gpt-4o-mini",\n  "seed": 12345678901234567891, "messages": [{"role": "user", "content": "hi"}], "stream": true ,"stream_options":{"include_usage":true}}\n',
    );
    const [record] = await gateway.waitForOutcomes(1);
    expect(record).to.deep.include({ outcome: 'completed', usageSource: 'reported', cost: 177 });
  });

  it("re-serialises a request whose stream_options lacks include_usage, keeping the client's own options", async () => {
    upstream.reply({ headers: SSE_HEADERS, chunks: [chatStream(TEXT, { input: 800, cached: 200, output: 120 })] });
    for (const streamOptions of [null, { include_obfuscation: false }]) {
      upstream.received.length = 0;
      const sent = JSON.stringify({ model: 'gpt-4o-mini', messages: [], stream: true, stream_options: streamOptions });
      await post(`${gateway.url}/v1/chat/completions`, sent, { authorization: `Bearer ${key}` });
      expect(JSON.parse(upstream.received[0]!.body.toString())).to.deep.equal({
        model: 'gpt-4o-mini',
        messages: [],
        stream: true,
        stream_options: { ...streamOptions, include_usage: true },
      });
    }
    await gateway.waitForOutcomes(2);
  });
});
