import { expect } from 'chai';
import fc from 'fast-check';
import { creditsToMicros, microsToCredits } from '../../ledger/money.js';

describe('money: credits ↔ micro-credits', () => {
  it('converts decimals exactly, without floating point', () => {
    for (const [credits, micros] of [
      ['0', 0],
      ['12', 12_000_000],
      ['12.5', 12_500_000],
      ['0.000001', 1],
      // 0.1 + 0.2 in floating point is 0.30000000000000004.
      ['0.3', 300_000],
      ['1.100000', 1_100_000],
      ['9007199254.740991', Number.MAX_SAFE_INTEGER],
    ] as const) {
      expect(creditsToMicros(credits), credits).to.equal(micros);
    }
  });

  it('rejects negatives, more than 6 decimals, non-numbers and unsafe sizes, naming the value', () => {
    for (const [credits, message] of [
      ['-1', '--credits must not be negative, got "-1"'],
      ['0.0000001', '--credits has more than 6 decimal places (1 micro-credit = 0.000001 credit), got "0.0000001"'],
      ['1e3', '--credits must be a decimal number of credits such as 12 or 12.5, got "1e3"'],
      ['', 'got ""'],
      ['1.', 'got "1."'],
      ['9007199254.740992', '--credits is too large (at most 9007199254.740991 credits), got "9007199254.740992"'],
    ]) {
      expect(() => creditsToMicros(credits!, '--credits'), credits).to.throw(RangeError, message);
    }
  });

  it('formats micro-credits as the shortest exact decimal', () => {
    for (const [micros, credits] of [
      [0, '0'],
      [1, '0.000001'],
      [12_500_000, '12.5'],
      [-2_000_001, '-2.000001'],
      [Number.MAX_SAFE_INTEGER, '9007199254.740991'],
    ] as const) {
      expect(microsToCredits(micros)).to.equal(credits);
    }
    expect(() => microsToCredits(0.5)).to.throw(RangeError, 'got 0.5');
  });

  it('round-trips every non-negative safe integer', () => {
    fc.assert(fc.property(fc.maxSafeNat(), (micros) => creditsToMicros(microsToCredits(micros)) === micros));
  });
});
