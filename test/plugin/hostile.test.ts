/**
 * Hostile input on both sides: smuggling attempts and oversized headers from clients; endless
 * frames, invalid UTF-8, a gzip bomb, absurd usage and non-SSE bodies from an upstream. Each gets
 * a clear error or a safe outcome; the client always gets the upstream's bytes; no credit is
 * lost or under-charged. And nothing secret ends up in spans, metrics, logs or error bodies.
 */
import { expect } from 'chai';
import net from 'node:net';
import { gzipSync } from 'node:zlib';
import { startGateway, type TestGateway } from '../support/gateway.js';
import { post, sha256 } from '../support/http.js';
import { parsePricing } from '../../plugin/pricing.js';
import { TEST_PRICING } from '../support/pricing.js';
import { chatStream, responsesObject, responsesStream, SSE_HEADERS } from '../support/provider-streams.js';
import { startUpstream, type Upstream } from '../support/upstream.js';
import { splitEvery } from '../support/chunking.js';

/** Sends raw bytes on a fresh connection and returns what came back before the server closed it. */
function raw(url: string, bytes: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const socket = net.connect(Number(port), '127.0.0.1', () => socket.end(bytes));
    let answer = '';
    socket.on('data', (data) => (answer += data.toString('latin1')));
    socket.on('close', () => resolve(answer));
    socket.on('error', () => resolve(answer));
  });
}

describe('hostile input', function () {
  this.timeout(60_000);
  let upstream: Upstream;
  let gateway: TestGateway;
  let key: string;
  const logs: string[] = [];

  before(async () => {
    upstream = await startUpstream();
    gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING, maxUsageEventBytes: 1024 * 1024, logger: (line) => logs.push(line) });
    key = await gateway.account('hostile', 1_000_000_000);
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
  });
  beforeEach(() => {
    gateway.outcomes.length = 0;
    upstream.received.length = 0;
  });

  async function parseErrors(): Promise<number> {
    const metric = await gateway.registry.getSingleMetric('tollgate_usage_parse_errors_total')!.get();
    return metric.values.reduce((sum, value) => sum + value.value, 0);
  }

  describe('from clients', () => {
    it('conflicting Content-Length and Transfer-Encoding (smuggling): 400 from the parser, nothing forwarded or held', async () => {
      const body = JSON.stringify({ model: 'gpt-4.1', input: 'hi' });
      const answer = await raw(
        gateway.url,
        `POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Length: 4\r\n` +
          `Transfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
      );
      expect(answer).to.match(/^HTTP\/1\.1 400 /);
      expect(upstream.received).to.have.length(0);
      expect(await gateway.ledger.account('hostile')).to.deep.include({ held: 0 });
    });

    it('oversized headers: 431, nothing forwarded', async () => {
      const answer = await raw(
        gateway.url,
        `POST /v1/responses HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\nContent-Length: 2\r\n\r\n{}`,
      );
      expect(answer).to.match(/^HTTP\/1\.1 431 /);
      expect(upstream.received).to.have.length(0);
    });

    it('a header injection attempt in a value is refused by the parser', async () => {
      const answer = await raw(gateway.url, `POST /v1/responses HTTP/1.1\r\nHost: x\r\nX-A: b\rX-Injected: 1\r\nContent-Length: 2\r\n\r\n{}`);
      expect(answer).to.match(/^HTTP\/1\.1 400 /);
      expect(upstream.received).to.have.length(0);
    });
  });

  describe('from the upstream', () => {
    const request = JSON.stringify({ model: 'gpt-4.1', input: 'hi', stream: true, max_output_tokens: 100 });

    async function through(body: Buffer[], headers: Record<string, string> = SSE_HEADERS) {
      upstream.reply({ headers, chunks: body });
      const errorsBefore = await parseErrors();
      const res = await post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` });
      const [record] = await gateway.waitForOutcomes(1);
      return { res, record: record!, newParseErrors: (await parseErrors()) - errorsBefore };
    }

    it('an endless frame (8 MiB without a line end): the bytes pass, the parser gives up and counts it', async () => {
      const body = [Buffer.from('data: '), ...splitEvery(Buffer.alloc(8 * 1024 * 1024, 'x'), 64 * 1024)];
      const { res, record, newParseErrors } = await through(body);
      expect(sha256(res.body)).to.equal(sha256(Buffer.concat(body)));
      expect(record.outcome).to.equal('upstream_error');
      expect(record.usageSource).to.equal('missing');
      expect(newParseErrors).to.equal(1);
    });

    it('invalid UTF-8 inside the text deltas: the bytes pass untouched, the usage is still read', async () => {
      const stream = responsesStream('TEXT_MARK', { input: 10, output: 20 });
      const at = stream.indexOf('TEXT_MARK');
      const body = Buffer.concat([stream.subarray(0, at), Buffer.from([0xff, 0xfe, 0xc3]), stream.subarray(at + 9)]);
      const { res, record } = await through([body]);
      expect(sha256(res.body)).to.equal(sha256(body));
      expect(record.outcome).to.equal('completed');
      expect(record.usage).to.include({ inputTokens: 10, outputTokens: 20 });
    });

    it('a gzip bomb: the client gets the compressed bytes, decoding stops early, the reservation is charged', async () => {
      // 256 MiB of zeros compress to about 256 KiB.
      const bomb = gzipSync(Buffer.alloc(256 * 1024 * 1024));
      const { res, record, newParseErrors } = await through(splitEvery(bomb, 16 * 1024), { ...SSE_HEADERS, 'content-encoding': 'gzip' });
      expect(sha256(res.body)).to.equal(sha256(bomb));
      expect(record.usageSource).to.equal('missing');
      expect(newParseErrors).to.equal(1);
    });

    for (const [name, input] of [
      ['negative', -5],
      ['absurd', 1e15],
      ['fractional', 10.5],
    ] as const) {
      it(`a ${name} token count is not billed as reported: the reservation is charged instead`, async () => {
        const body = responsesStream('x', { input: 10, output: 20 });
        const tampered = Buffer.from(body.toString().replace('"input_tokens":10', `"input_tokens":${input}`));
        const { res, record } = await through([tampered]);
        expect(sha256(res.body)).to.equal(sha256(tampered));
        expect(record.usageSource).to.equal('missing');
        expect(record.cost).to.equal(undefined);
      });
    }

    it('counts that cost more than money can be here (2^53 µcr): the reservation is charged, the gateway does not crash', async () => {
      // 10^12 output tokens (believable as a count) × 9 × 10^12 µcr per 1M = 9 × 10^18 µcr.
      const pricing = parsePricing({ models: { steep: { input: 1, output: 9_000_000 } } }, 'steep');
      const local = await startGateway(upstream.url, 5, { pricing });
      try {
        const rich = await local.account('rich', 1_000_000_000_000);
        upstream.reply({ headers: SSE_HEADERS, chunks: [responsesStream('x', { input: 10, output: 1e12 })] });
        const res = await post(`${local.url}/v1/responses`, JSON.stringify({ model: 'steep', input: 'hi', stream: true, max_output_tokens: 1 }), {
          authorization: `Bearer ${rich}`,
        });
        expect(res.status).to.equal(200);
        const [record] = await local.waitForOutcomes(1);
        expect(record!.usageSource).to.equal('missing');
        expect(record!.cost).to.equal(undefined);
      } finally {
        await local.close();
      }
    });

    it('a JSON body under an SSE content type: bytes pass, no usage, counted as missing', async () => {
      const body = Buffer.from(JSON.stringify(responsesObject('x', { input: 3, output: 4 })));
      const { res, record } = await through([body]);
      expect(sha256(res.body)).to.equal(sha256(body));
      expect(record.outcome).to.equal('upstream_error');
      expect(record.usageSource).to.equal('missing');
    });
  });

  describe('secrets', () => {
    it('no key, prompt or completion text in spans, metrics, logs or error bodies', async () => {
      const PROMPT = 'SECRET-PROMPT-7f3a';
      const COMPLETION = 'SECRET-COMPLETION-91bc';
      const bodies: string[] = [];
      upstream.reply((request) =>
        request.url.includes('chat')
          ? { headers: SSE_HEADERS, chunks: [chatStream(COMPLETION, { input: 5, output: 6 })] }
          : { status: 400, headers: { 'content-type': 'application/json' }, chunks: [Buffer.from('{"error":{"message":"bad"}}')] },
      );
      const chat = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT }], stream: true });
      bodies.push((await post(`${gateway.url}/v1/chat/completions`, chat, { authorization: `Bearer ${key}` })).body.toString());
      bodies.push((await post(`${gateway.url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', input: PROMPT }), { authorization: `Bearer ${key}` })).body.toString());
      // Rejections echo nothing of the request either.
      bodies.push((await post(`${gateway.url}/v1/responses`, `{"input": "${PROMPT}", `, { authorization: `Bearer ${key}` })).body.toString());
      bodies.push((await post(`${gateway.url}/v1/responses`, '{}', { authorization: `Bearer ${PROMPT}` })).body.toString());
      await gateway.waitForOutcomes(2);

      const spans = JSON.stringify(gateway.spans.getFinishedSpans().map((span) => ({ name: span.name, attributes: span.attributes, events: span.events, status: span.status })));
      const metrics = await gateway.registry.metrics();
      const telemetry = [spans, metrics, logs.join('\n')].join('\n');
      for (const secret of [key, 'sk-upstream-openai', 'sk-upstream-anthropic', PROMPT, COMPLETION]) {
        expect(telemetry, `telemetry leaked ${secret}`).not.to.contain(secret);
      }
      // The completion is the first response's content, for its client; no body carries a key or the prompt.
      for (const body of bodies) {
        for (const secret of [key, 'sk-upstream-openai', PROMPT]) expect(body, `a body leaked ${secret}`).not.to.contain(secret);
      }
      expect(upstream.received.every((request) => request.headers.authorization === 'Bearer sk-upstream-openai')).to.equal(true);
    });
  });
});

describe('revoked keys', function () {
  it('stop working at once: the next request is 401', async () => {
    const upstream = await startUpstream();
    upstream.reply({ headers: SSE_HEADERS, chunks: [responsesStream('x', { input: 1, output: 1 })] });
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING });
    try {
      const key = await gateway.account('revoked', 10_000_000);
      const request = JSON.stringify({ model: 'gpt-4.1', input: 'hi', stream: true });
      expect((await post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` })).status).to.equal(200);
      expect(await gateway.ledger.revokeKey(key)).to.equal(true);
      expect((await post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` })).status).to.equal(401);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('tenant isolation', function () {
  it("a key reserves and is charged only on its own account, whatever the request claims", async () => {
    const upstream = await startUpstream();
    upstream.reply({ headers: SSE_HEADERS, chunks: [responsesStream('x', { input: 10, output: 20 })] });
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING });
    try {
      const keyA = await gateway.account('tenant-a', 10_000_000);
      await gateway.account('tenant-b', 10_000_000);
      // Claims of another identity in the body, headers or query change nothing.
      const claims = JSON.stringify({ model: 'gpt-4.1', stream: true, user: 'tenant-b', metadata: { account: 'tenant-b' } });
      await post(`${gateway.url}/v1/responses?account=tenant-b`, claims, { authorization: `Bearer ${keyA}`, 'x-tollgate-account': 'tenant-b' });
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.accountId).to.equal('tenant-a');
      // Two keys at once: x-api-key wins, and it is still a key, not an account name.
      expect((await post(`${gateway.url}/v1/responses`, claims, { 'x-api-key': 'tenant-b', authorization: `Bearer ${keyA}` })).status).to.equal(401);
      expect(await gateway.ledger.account('tenant-b')).to.deep.equal({ accountId: 'tenant-b', balance: 10_000_000, held: 0, available: 10_000_000 });
      expect((await gateway.ledger.statement('tenant-b')).filter((line) => line.reservationId !== null)).to.have.length(0);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});
