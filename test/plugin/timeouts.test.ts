/**
 * Upstream timeouts and graceful shutdown: every way the gateway itself ends an exchange still
 * ends it with exactly one outcome, and the client gets a clear answer.
 */
import { expect } from 'chai';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { startGateway } from '../support/gateway.js';
import { post, sha256 } from '../support/http.js';
import { TEST_PRICING } from '../support/pricing.js';
import { anthropicStream, responsesStream, SSE_HEADERS } from '../support/provider-streams.js';
import { splitRandomly } from '../support/chunking.js';
import { startUpstream } from '../support/upstream.js';

const request = JSON.stringify({ model: 'gpt-4.1', input: 'hi', stream: true, max_output_tokens: 100 });

describe('upstream timeouts', function () {
  it('a connection that never completes its TLS handshake: 504 after the connect timeout, upstream_error', async () => {
    // Accepts TCP, never answers the TLS ClientHello.
    const silent = net.createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    const gateway = await startGateway(`https://127.0.0.1:${port}`, 5, { pricing: TEST_PRICING, upstreamConnectTimeoutMs: 300 });
    try {
      const key = await gateway.account('connect', 10_000_000);
      const started = Date.now();
      const res = await post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` });
      expect(res.status).to.equal(504);
      expect(Date.now() - started).to.be.within(250, 3000);
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('upstream_error');
    } finally {
      await gateway.close();
      silent.close();
    }
  });

  it('an upstream that never answers: 504 after the idle timeout, upstream_error', async () => {
    const upstream = await startUpstream();
    upstream.reply({ headers: SSE_HEADERS, chunks: [], stallAfterChunks: 0 });
    const gateway = await startGateway(upstream.url, 4, { pricing: TEST_PRICING, upstreamIdleTimeoutMs: 300 });
    try {
      const key = await gateway.account('idle', 10_000_000);
      const aborted = upstream.nextAbort();
      const res = await post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` });
      expect(res.status).to.equal(504);
      expect(JSON.parse(res.body.toString()).error.message).to.equal('the upstream API did not answer in time');
      await aborted;
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('upstream_error');
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it('a stream that goes silent mid-way: cut after the idle timeout, upstream_error with the usage so far', async () => {
    const upstream = await startUpstream();
    const chunks = splitRandomly(anthropicStream('x'.repeat(400), { input: 500, output: 90 }), 4, 30);
    upstream.reply({ headers: SSE_HEADERS, chunks, stallAfterChunks: 20 });
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING, upstreamIdleTimeoutMs: 300 });
    try {
      const key = await gateway.account('stall', 10_000_000);
      const res = await post(`${gateway.url}/v1/messages`, JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 100, stream: true }), {
        'x-api-key': key,
      }).catch((error: Error) => error);
      // The response was cut short: the client sees a broken stream, not a clean end.
      expect(res).to.be.instanceOf(Error);
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('upstream_error');
      expect(record!.usage?.inputTokens).to.equal(500);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it('a stream that never pauses for the idle timeout is not cut, however long it lasts', async () => {
    const upstream = await startUpstream();
    const body = anthropicStream('steady', { input: 70, output: 11 });
    // 12 writes 150 ms apart: 1.8 s in all, six idle timeouts, but never 300 ms without a byte.
    const chunks = Array.from({ length: 12 }, (_, i) => body.subarray(Math.floor((i * body.length) / 12), Math.floor(((i + 1) * body.length) / 12)));
    upstream.reply({ headers: SSE_HEADERS, chunks, delayMs: 150 });
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING, upstreamIdleTimeoutMs: 300 });
    try {
      const key = await gateway.account('steady', 10_000_000);
      const res = await post(`${gateway.url}/v1/messages`, JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 100, stream: true }), {
        'x-api-key': key,
      });
      expect(sha256(res.body)).to.equal(sha256(body));
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('completed');
      expect(record!.usage).to.include({ inputTokens: 70, outputTokens: 11 });
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it('a client that reads slowly holds the upstream back, which is not the upstream going idle', async () => {
    const upstream = await startUpstream();
    // 8 MiB of SSE comments, then the stream: far more than the sockets between them buffer.
    const body = Buffer.concat([Buffer.from(`: ${'x'.repeat(1021)}\n`.repeat(8192)), anthropicStream('done', { input: 50, output: 9 })]);
    const chunks = Array.from({ length: Math.ceil(body.length / 65536) }, (_, i) => body.subarray(i * 65536, (i + 1) * 65536));
    upstream.reply({ headers: SSE_HEADERS, chunks });
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING, upstreamIdleTimeoutMs: 300 });
    try {
      const key = await gateway.account('slow', 10_000_000);
      const received = await new Promise<Buffer>((resolve, reject) => {
        const req = http.request(`${gateway.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' } });
        req.on('response', (res) => {
          const parts: Buffer[] = [];
          res.once('data', () => {
            // The client stops reading for four idle timeouts.
            res.pause();
            setTimeout(() => res.resume(), 1200);
          });
          res.on('data', (part: Buffer) => parts.push(part));
          res.on('end', () => resolve(Buffer.concat(parts)));
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end(JSON.stringify({ model: 'claude-sonnet-4-6', max_tokens: 100, stream: true }));
      });
      expect(sha256(received)).to.equal(sha256(body));
      const [record] = await gateway.waitForOutcomes(1);
      expect(record!.outcome).to.equal('completed');
      expect(record!.usage).to.include({ inputTokens: 50, outputTokens: 9 });
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});

describe('graceful shutdown (drain)', function () {
  it('cuts a request still being admitted at the deadline: a body that trickles in held it until the request timeout', async () => {
    const upstream = await startUpstream();
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING });
    try {
      const key = await gateway.account('trickle', 10_000_000);
      const req = http.request(`${gateway.url}/v1/responses`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': 1000 },
      });
      const ended = new Promise((resolve) => req.on('error', resolve).on('response', resolve));
      req.write('{"model": "gpt-4.1", "input": "');
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      await gateway.drain(300);
      expect(Date.now() - started).to.be.within(250, 1500);
      await ended;
      expect(upstream.received).to.have.length(0);
      expect(await gateway.ledger.account('trickle')).to.deep.include({ held: 0, balance: 10_000_000 });
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it('lets a stream in flight finish before the deadline, and cuts the one still running after it', async () => {
    const upstream = await startUpstream();
    const body = responsesStream('y'.repeat(300), { input: 20, output: 30 });
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING });
    try {
      const key = await gateway.account('drain', 10_000_000);
      // 30 chunks × 20 ms ≈ 0.6 s: finishes inside a 5 s deadline.
      upstream.reply({ headers: SSE_HEADERS, chunks: splitRandomly(body, 8, 29), delayMs: 20 });
      const finishing = post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` });
      await new Promise((resolve) => setTimeout(resolve, 100));
      await gateway.drain(5000);
      expect((await finishing).body.equals(body)).to.equal(true);
      expect(gateway.outcomes.map((record) => record.outcome)).to.deep.equal(['completed']);

      // 30 chunks × 200 ms ≈ 6 s: still running at a 300 ms deadline.
      upstream.reply({ headers: SSE_HEADERS, chunks: splitRandomly(body, 8, 29), delayMs: 200 });
      const cut = post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` }).catch((error: Error) => error);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const started = Date.now();
      await gateway.drain(300);
      expect(Date.now() - started).to.be.below(1500);
      expect(await cut).to.be.instanceOf(Error);
      expect(gateway.outcomes.map((record) => record.outcome)).to.deep.equal(['completed', 'upstream_error']);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});
