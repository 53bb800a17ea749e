/**
 * The reservation estimate is an upper bound of what the request can cost.
 */
import { expect } from 'chai';
import { estimateReservation } from '../../plugin/estimate.js';
import { costOf } from '../../plugin/pricing.js';
import { routeFor } from '../../plugin/routes.js';
import { TEST_PRICING } from '../support/pricing.js';

const SETTINGS = { defaultMaxOutputTokens: 4096, bytesPerInputToken: 1, safetyBuffer: 1 };

describe('estimateReservation', () => {
  it('Chat Completions with n choices: every choice may write up to the limit', () => {
    const request = { model: 'gpt-4.1', n: 3, max_completion_tokens: 100, messages: [{ role: 'user', content: 'hi' }] };
    const body = Buffer.from(JSON.stringify(request));
    const price = TEST_PRICING.price('gpt-4.1')!;
    const estimate = estimateReservation(body.length, request, routeFor('/v1/chat/completions')!, price, SETTINGS);
    expect(estimate.outputTokens).to.equal(300);
    // What OpenAI bills when each of the 3 choices reaches its 100 tokens: completion_tokens 300.
    const worst = costOf({ inputTokens: body.length, outputTokens: 300 }, price);
    expect(estimate.amount).to.be.at.least(worst);
  });

  it('n is read on Chat Completions only, and a bad n counts as one choice', () => {
    const price = TEST_PRICING.price('gpt-4.1')!;
    const responses = estimateReservation(10, { n: 3, max_output_tokens: 100 }, routeFor('/v1/responses')!, price, SETTINGS);
    expect(responses.outputTokens).to.equal(100);
    for (const n of [0, -2, 1.5, '3', null]) {
      const chat = estimateReservation(10, { n, max_tokens: 100 }, routeFor('/v1/chat/completions')!, price, SETTINGS);
      expect(chat.outputTokens, String(n)).to.equal(100);
    }
  });
});
