/**
 * The ledger is down (a real PGlite ledger, closed under the gateway): fail closed by default,
 * or forward unmetered when the operator chose availability.
 */
import { expect } from 'chai';
import { openLedger } from '../../ledger/index.js';
import { startGateway } from '../support/gateway.js';
import { post, sha256 } from '../support/http.js';
import { TEST_PRICING } from '../support/pricing.js';
import { responsesStream, SSE_HEADERS } from '../support/provider-streams.js';
import { startUpstream, type Upstream } from '../support/upstream.js';

describe('a ledger outage', function () {
  let upstream: Upstream;
  const body = responsesStream('still served', { input: 5, output: 5 });
  const request = JSON.stringify({ model: 'gpt-4.1', input: 'hi', stream: true });

  before(async () => {
    upstream = await startUpstream();
    upstream.reply({ headers: SSE_HEADERS, chunks: [body] });
  });
  after(() => upstream.close());

  async function downLedger() {
    const ledger = await openLedger('memory://');
    await ledger.createAccount('acct', 10_000_000);
    const key = await ledger.createKey('acct');
    await ledger.close();
    return { ledger, key };
  }

  it('fails closed by default: 503 with Retry-After, provider-shaped, nothing forwarded', async () => {
    const { ledger, key } = await downLedger();
    const gateway = await startGateway(upstream.url, 5, { ledger, pricing: TEST_PRICING });
    try {
      upstream.received.length = 0;
      const res = await post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` });
      expect(res.status).to.equal(503);
      expect(res.headers['retry-after']).to.equal('1');
      expect(JSON.parse(res.body.toString())).to.deep.equal({
        error: { message: 'the credit ledger is unavailable, retry later', type: 'server_error', param: null, code: 'ledger_unavailable' },
      });
      expect(upstream.received).to.have.length(0);
    } finally {
      await gateway.close();
    }
  });

  it("with ledgerOutage 'forward': served unmetered, counted, no span, no outcome", async () => {
    const { ledger, key } = await downLedger();
    const gateway = await startGateway(upstream.url, 4, { ledger, pricing: TEST_PRICING, ledgerOutage: 'forward' });
    try {
      upstream.received.length = 0;
      const res = await post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` });
      expect(res.status).to.equal(200);
      expect(sha256(res.body)).to.equal(sha256(body));
      expect(sha256(upstream.received[0]!.body)).to.equal(sha256(Buffer.from(request)));
      expect(await gateway.registry.getSingleMetricAsString('tollgate_unmetered_requests_total')).to.contain(
        'tollgate_unmetered_requests_total{provider="openai"} 1',
      );
      expect(gateway.outcomes).to.have.length(0);
      expect(gateway.spans.getFinishedSpans()).to.have.length(0);
    } finally {
      await gateway.close();
    }
  });
});
