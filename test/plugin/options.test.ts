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
    ['a zero body limit', { maxBodyBytes: 0 }, /option maxBodyBytes must be a positive integer, got 0/],
    ['a fractional token default', { defaultMaxOutputTokens: 1.5 }, /option defaultMaxOutputTokens must be a positive integer, got 1.5/],
    ['a buffer below 1', { safetyBuffer: 0.9 }, /option safetyBuffer must be a finite number >= 1, got 0.9/],
    ['an unknown chat policy', { chatUsage: 'sometimes' }, /option chatUsage must be "reserve" or "inject", got "sometimes"/],
    ['an unknown outage policy', { ledgerOutage: 'ignore' }, /option ledgerOutage must be "reject" or "forward", got "ignore"/],
    ['an empty upstream key', { openaiApiKey: '' }, /option openaiApiKey must be a non-empty string, got ""/],
    ['a short signing secret', { spanSigningKey: { id: 'k', secret: 'short' } }, /option spanSigningKey must be a valid key .*at least 16 bytes.*, got "k"/],
    ['a hook that is not a function', { onOutcome: 'log' }, /option onOutcome must be a function, got "log"/],
    ['a reservation TTL past a year and a day', { reservationTtlSeconds: 1e12 }, /option reservationTtlSeconds must be a positive integer, at most 31622400, got 1000000000000/],
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
