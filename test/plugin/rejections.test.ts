/**
 * Bad input gets a clear, provider-shaped error and never holds a credit; an unreachable upstream
 * is a prompt 502 with outcome upstream_error.
 */
import { expect } from 'chai';
import http from 'node:http';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { post } from '../support/http.js';
import { parsePricing } from '../../plugin/pricing.js';
import { TEST_PRICING, TEST_PRICING_FILE } from '../support/pricing.js';
import { JSON_HEADERS, responsesObject } from '../support/provider-streams.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

describe('requests tollgate refuses', function () {
  let upstream: Upstream;
  let gateway: TestGateway;
  let key: string;
  let poorKey: string;

  before(async () => {
    upstream = await startUpstream();
    upstream.reply({ headers: JSON_HEADERS, chunks: [Buffer.from(JSON.stringify(responsesObject('x', { input: 1, output: 1 })))] });
    gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING, maxBodyBytes: 64 * 1024 });
    key = await gateway.account('alice', 100_000_000);
    // 0.01 credits: far less than any estimate below
    poorKey = await gateway.account('bob', 10_000);
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
  });

  const responses = (body: unknown, headers: http.OutgoingHttpHeaders = { authorization: `Bearer ${key}` }) =>
    post(`${gateway.url}/v1/responses`, typeof body === 'string' ? body : JSON.stringify(body), headers);

  async function expectNothingHeld(accountId: string, balance: number) {
    expect(await gateway.ledger.account(accountId)).to.deep.include({ balance, held: 0, available: balance });
  }

  it('401 without a key, and with an unknown one, in the provider error shape', async () => {
    const missing = await responses({ model: 'gpt-4.1' }, {});
    expect(missing.status).to.equal(401);
    expect(JSON.parse(missing.body.toString())).to.deep.equal({
      error: { message: 'missing API key', type: 'invalid_request_error', param: null, code: 'unauthenticated' },
    });
    // One that cannot be a key at all (whitespace inside) is refused the same way, not as an outage.
    for (const apiKey of ['tg_nope', 'tg nope']) {
      const unknown = await post(`${gateway.url}/v1/messages`, JSON.stringify({ model: 'claude-sonnet-4-6' }), { 'x-api-key': apiKey });
      expect(unknown.status).to.equal(401);
      expect(JSON.parse(unknown.body.toString())).to.deep.equal({
        type: 'error',
        error: { type: 'authentication_error', message: 'invalid API key' },
      });
    }
  });

  it('413 for a chunked body over the limit (no Content-Length to trust)', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request(`${gateway.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'transfer-encoding': 'chunked' },
      });
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      const piece = Buffer.alloc(16 * 1024, 'a');
      for (let i = 0; i < 5; i++) req.write(piece);
      req.end();
    });
    expect(status).to.equal(413);
    await expectNothingHeld('alice', 100_000_000);
  });

  it('413 leaves the keep-alive connection usable: the rest of the body is discarded (it hung until the idle timeout)', async () => {
    // An account of its own: the second request goes upstream and is charged.
    const carolKey = await gateway.account('carol', 100_000_000);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const send = (body: Buffer) =>
      new Promise<{ status?: number; reused: boolean }>((resolve, reject) => {
        const req = http.request(`${gateway.url}/v1/responses`, {
          method: 'POST',
          agent,
          headers: { authorization: `Bearer ${carolKey}`, 'content-type': 'application/json', 'content-length': body.length },
        });
        req.on('response', (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode, reused: req.reusedSocket }));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      // 1 MB against a 64 KiB limit: most of it is still on its way when the 413 is sent.
      const big = Buffer.from(JSON.stringify({ model: 'gpt-4.1', input: 'x'.repeat(1024 * 1024) }));
      expect((await send(big)).status).to.equal(413);
      const started = Date.now();
      const next = await send(Buffer.from(JSON.stringify({ model: 'gpt-4.1', input: 'hi' })));
      expect(next).to.deep.equal({ status: 200, reused: true });
      expect(Date.now() - started).to.be.below(1000);
    } finally {
      agent.destroy();
      // The other tests count what reached the upstream from none.
      upstream.received.length = 0;
    }
  });

  it('415 for a form-typed body, which express-http-proxy would re-encode on its way upstream', async () => {
    const res = await responses({ model: 'gpt-4.1', input: 'hi' }, { authorization: `Bearer ${key}`, 'content-type': 'application/x-www-form-urlencoded' });
    expect(res.status).to.equal(415);
    expect(JSON.parse(res.body.toString()).error.message).to.match(/content-type application\/x-www-form-urlencoded is not supported/);
    expect(upstream.received).to.have.length(0);
    await expectNothingHeld('alice', 100_000_000);
  });

  it('400 for invalid JSON, a non-object, no model, and a model without a price', async () => {
    const cases: Array<[unknown, string]> = [
      ['{"model": "gpt-4.1",', 'request body is not valid JSON'],
      [[1, 2], 'request body must be a JSON object'],
      [{ input: 'hi' }, 'request has no model'],
      [{ model: 'gpt-9-unpriced' }, 'model "gpt-9-unpriced" has no price'],
    ];
    for (const [body, message] of cases) {
      const res = await responses(body);
      expect(res.status, message).to.equal(400);
      expect(JSON.parse(res.body.toString()).error.message).to.equal(message);
    }
    expect(upstream.received).to.have.length(0);
  });

  it('402 when the account cannot cover the estimate; the SDK surfaces it', async () => {
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: poorKey, maxRetries: 0 });
    // at least 2,000 output tokens × 8 µcr = 16,000 µcr > the 10,000 held
    const error = await client.responses.create({ model: 'gpt-4.1', input: 'hi', max_output_tokens: 2000 }).catch((e) => e);
    expect(error).to.be.instanceOf(OpenAI.APIError);
    expect(error.status).to.equal(402);
    expect(error.message).to.match(/insufficient credits/);
    await expectNothingHeld('bob', 10_000);
    expect(upstream.received).to.have.length(0);
    const anthropic = new Anthropic({ baseURL: gateway.url, apiKey: poorKey, maxRetries: 0 });
    const refused = await anthropic.messages
      .create({ model: 'claude-sonnet-4-6', max_tokens: 2000, messages: [{ role: 'user', content: 'hi' }] })
      .catch((e) => e);
    expect(refused.status).to.equal(402);
    expect(refused.error).to.deep.include({ type: 'error' });
  });

  it('402 when a client asks for 2^53 output tokens of a model without a limit (not a 500)', async () => {
    const pricing = parsePricing({ models: { unbounded: { input: 1, output: 1000 } } }, 'unbounded');
    const local = await startGateway(upstream.url, 5, { pricing });
    try {
      const rich = await local.account('rich', 1_000_000_000_000);
      const body = JSON.stringify({ model: 'unbounded', input: 'hi', max_output_tokens: Number.MAX_SAFE_INTEGER });
      const res = await post(`${local.url}/v1/responses`, body, { authorization: `Bearer ${rich}` });
      expect(res.status).to.equal(402);
      // Output capped at 10^9 tokens × 1,000 µcr + one input token per body byte × 1 µcr.
      expect(JSON.parse(res.body.toString()).error.message).to.contain(`may cost up to ${1e12 + body.length} micro-credits`);
      expect(await local.ledger.account('rich')).to.deep.include({ held: 0 });
    } finally {
      await local.close();
    }
  });

  it('402 when the estimate passes 2^53 micro-credits, never a 500, never forwarded unmetered as if the ledger were down', async () => {
    // 9e15 µcr for 10^9 output tokens: safe, until the buffer of 2 doubles it (it was forwarded unmetered).
    const pricing = parsePricing({ models: { steep: { input: 1, output: 9_000_000 } } }, 'steep');
    const local = await startGateway(upstream.url, 5, { pricing, safetyBuffer: 2, ledgerOutage: 'forward' });
    try {
      const rich = await local.account('rich', 1_000_000_000_000);
      const res = await post(`${local.url}/v1/responses`, JSON.stringify({ model: 'steep', input: 'hi', max_output_tokens: 1e9 }), { authorization: `Bearer ${rich}` });
      expect(res.status).to.equal(402);
      expect(JSON.parse(res.body.toString()).error.message).to.contain(`may cost more than ${Number.MAX_SAFE_INTEGER} micro-credits`);
      expect(upstream.received).to.have.length(0);
      expect(await local.ledger.account('rich')).to.deep.include({ held: 0 });
    } finally {
      await local.close();
    }
  });

  it('400 for a model name no ledger can store, without failing the requests reserved with it', async () => {
    // A default price lets any model name through to the reserve: PostgreSQL text cannot hold a
    // NUL, and the statement that failed on it would fail every request of its group.
    const pricing = parsePricing({ ...TEST_PRICING_FILE, default: { input: 1, output: 1 } }, 'with default');
    const local = await startGateway(upstream.url, 5, { pricing });
    try {
      const apiKey = await local.account('dana', 100_000_000);
      const send = (model: string) =>
        post(`${local.url}/v1/responses`, JSON.stringify({ model, input: 'hi', max_output_tokens: 10 }), { authorization: `Bearer ${apiKey}` });
      const results = await Promise.all(['gpt-4.1', 'evil\u0000model', 'any-model', 'x'.repeat(257), 'gpt-4.1'].map(send));
      expect(results.map((res) => res.status)).to.deep.equal([200, 400, 200, 400, 200]);
      expect(JSON.parse(results[1]!.body.toString()).error.message).to.equal('request has an invalid model (control characters, or over 256 characters)');
      expect((await local.waitForOutcomes(3)).map((record) => record.outcome)).to.deep.equal(['completed', 'completed', 'completed']);
    } finally {
      await local.close();
    }
  });

  it('leaves other paths and methods to the next handler', async () => {
    const res = await post(`${gateway.url}/v1/embeddings`, '{}', { authorization: `Bearer ${key}` });
    expect(res.status).to.equal(404);
  });
});

describe('an unreachable upstream', function () {
  it('answers 502 promptly with outcome upstream_error, and the error names no internal host', async () => {
    // A port nothing listens on: bind one, then close it.
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const gateway = await startGateway(`http://127.0.0.1:${port}`, 4, { pricing: TEST_PRICING });
    try {
      const key = await gateway.account('carol', 10_000_000);
      const started = Date.now();
      const res = await post(`${gateway.url}/v1/chat/completions`, JSON.stringify({ model: 'gpt-4o-mini', messages: [] }), {
        authorization: `Bearer ${key}`,
      });
      expect(Date.now() - started).to.be.below(2000);
      expect(res.status).to.equal(502);
      expect(res.body.toString()).not.to.contain('127.0.0.1');
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('upstream_error');
      expect(record!.status).to.equal(undefined);
    } finally {
      await gateway.close();
    }
  });
});
