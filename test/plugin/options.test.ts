/**
 * tollgate() validates its options once, when it is built: each bad value fails fast with an error
 * that names the option and the value.
 */
import { expect } from 'chai';
import { openLedger } from '../../ledger/index.js';
import type { Ledger } from '../../ledger/types.js';
import { tollgate, TollgateOptionError, type TollgateOptions } from '../../plugin/index.js';

describe('tollgate() options', function () {
  let ledger: Ledger;
  before(async () => {
    ledger = await openLedger('memory://');
  });
  after(() => ledger.close());

  const cases: Array<[string, Partial<TollgateOptions> | Record<string, unknown>, RegExp]> = [
    ['no ledger', { ledger: undefined }, /option ledger must be a Ledger .*, got undefined/],
    ['a ledger of the wrong kind', { ledger: {} }, /option ledger must be a Ledger/],
    ['a non-URL upstream', { openaiUpstream: 'api.openai.com' }, /option openaiUpstream must be an http\(s\) URL, got "api.openai.com"/],
    ['an ftp upstream', { anthropicUpstream: 'ftp://x' }, /option anthropicUpstream must be an http\(s\) URL, got "ftp:\/\/x"/],
    // Both were dropped without a word; the password is not repeated in the error.
    ['an upstream with credentials', { openaiUpstream: 'https://user:secret@api.example' }, /option openaiUpstream must be an http\(s\) URL without credentials .*, got "https:\/\/…@api.example\/"$/],
    ['an upstream with a query', { openaiUpstream: 'https://api.example/?api-version=1' }, /option openaiUpstream must be an http\(s\) URL without a query/],
    ['a zero body limit', { maxBodyBytes: 0 }, /option maxBodyBytes must be a positive integer, got 0/],
    ['a fractional token default', { defaultMaxOutputTokens: 1.5 }, /option defaultMaxOutputTokens must be a positive integer, got 1.5/],
    ['a buffer below 1', { safetyBuffer: 0.9 }, /option safetyBuffer must be a finite number >= 1, got 0.9/],
    ['an unknown chat policy', { chatUsage: 'sometimes' }, /option chatUsage must be "reserve" or "inject", got "sometimes"/],
    ['an unknown outage policy', { ledgerOutage: 'ignore' }, /option ledgerOutage must be "reject" or "forward", got "ignore"/],
    ['an empty upstream key', { openaiApiKey: '' }, /option openaiApiKey must be a non-empty string without control characters, got ""/],
    ['a short signing secret', { spanSigningKey: { id: 'k', secret: 'short' } }, /option spanSigningKey must be a valid key .*at least 16 bytes.*, got "k"/],
    ['a hook that is not a function', { onOutcome: 'log' }, /option onOutcome must be a function, got "log"/],
    ['a reservation TTL past a year and a day', { reservationTtlSeconds: 1e12 }, /option reservationTtlSeconds must be a positive integer, at most 31622400, got 1000000000000/],
    // Each of these failed at the first request instead, or on every one of them.
    ['a pricing table that is not one', { pricing: {} }, /option pricing must be a pricing table/],
    ['a tracer provider that is not one', { tracerProvider: {} }, /option tracerProvider must be an OpenTelemetry TracerProvider/],
    ['a registry that is not one', { registry: {} }, /option registry must be a prom-client Registry/],
    ['a null signing key', { spanSigningKey: null }, /option spanSigningKey must be a valid key/],
    ['a connect timeout Node cannot time', { upstreamConnectTimeoutMs: 2 ** 40 }, /option upstreamConnectTimeoutMs must be a positive integer of milliseconds, at most 2147483647/],
    ['an upstream key with a newline', { openaiApiKey: 'sk-a\nb' }, /option openaiApiKey must be a non-empty string without control characters/],
  ];
  for (const [name, options, message] of cases) {
    it(`refuses ${name}`, () => {
      const build = () => tollgate({ ledger, ...options } as TollgateOptions);
      expect(build).to.throw(TollgateOptionError, message);
      try {
        build();
      } catch (error) {
        expect((error as TollgateOptionError).code).to.equal('ERR_TOLLGATE_OPTION');
      }
    });
  }

  it('applies the documented defaults', () => {
    const middleware = tollgate({ ledger });
    expect(middleware.registry).to.exist;
    middleware.close();
  });
});
