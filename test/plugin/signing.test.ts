/**
 * The gateway signs each billing span's billing attributes; changing or removing any of them, or
 * signing with another key, no longer verifies.
 */
import { expect } from 'chai';
import { ATTR_GEN_AI_USAGE_INPUT_TOKENS, ATTR_TOLLGATE_SIGNATURE, ATTR_TOLLGATE_SIGNATURE_KEY_ID } from '../../plugin/semconv.js';
import { parseSigningKeys, SIGNED_ATTRIBUTES, verifySignature } from '../../plugin/signing.js';
import { startGateway } from '../support/gateway.js';
import { post } from '../support/http.js';
import { TEST_PRICING } from '../support/pricing.js';
import { responsesStream, SSE_HEADERS } from '../support/provider-streams.js';
import { startUpstream } from '../support/upstream.js';

describe('signed billing spans', function () {
  it('carry an HMAC of their billing attributes that breaks on any change', async () => {
    const upstream = await startUpstream();
    upstream.reply({ headers: SSE_HEADERS, chunks: [responsesStream('signed', { input: 12, output: 34 })] });
    const key = { id: 'k2026', secret: 'a-shared-secret-of-enough-bytes' };
    const gateway = await startGateway(upstream.url, 5, { pricing: TEST_PRICING, spanSigningKey: key });
    try {
      const apiKey = await gateway.account('signed', 10_000_000);
      await post(`${gateway.url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', stream: true }), { authorization: `Bearer ${apiKey}` });
      await gateway.waitForOutcomes(1);
      const attributes = { ...gateway.spans.getFinishedSpans()[0]!.attributes };
      expect(attributes[ATTR_TOLLGATE_SIGNATURE_KEY_ID]).to.equal('k2026');
      const claimed = String(attributes[ATTR_TOLLGATE_SIGNATURE]);
      const get = (name: string) => attributes[name];
      expect(verifySignature(get, claimed, key.secret)).to.equal(true);
      expect(verifySignature(get, claimed, 'another-secret-of-enough-bytes')).to.equal(false);
      for (const name of SIGNED_ATTRIBUTES) {
        const changed = { ...attributes, [name]: attributes[name] === undefined ? 1 : `${attributes[name]}0` };
        expect(verifySignature((n) => changed[n], claimed, key.secret), `changing ${name}`).to.equal(false);
      }
      const removed: Record<string, unknown> = { ...attributes, [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: undefined };
      expect(verifySignature((n) => removed[n], claimed, key.secret)).to.equal(false);
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });

  it('keys are checked: ids from a safe alphabet, secrets of at least 16 bytes', () => {
    expect(parseSigningKeys('old:0123456789abcdef,new:fedcba9876543210', 'K')).to.deep.equal([
      { id: 'old', secret: '0123456789abcdef' },
      { id: 'new', secret: 'fedcba9876543210' },
    ]);
    expect(() => parseSigningKeys('short:abc', 'K')).to.throw(RangeError, /at least 16 bytes/);
    expect(() => parseSigningKeys('no-separator', 'K')).to.throw(RangeError, /key id/);
  });
});
