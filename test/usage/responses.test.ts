import { expect } from 'chai';
import { responsesExtractor } from '../../plugin/usage/index.js';
import { describeFixtures, describeRobustness, extract, feedEndlessFrame, readFixture } from './replay.js';

describe('usage: OpenAI Responses', () => {
  describeFixtures(responsesExtractor, [
    {
      fixture: 'responses-completed.sse',
      // input_tokens 2500 already includes the 1920 cached; output_tokens 830 includes the 640 reasoning.
      expected: {
        usage: { inputTokens: 2500, cacheReadInputTokens: 1920, outputTokens: 830, reasoningOutputTokens: 640 },
        terminal: 'completed',
        responseId: 'resp_0a1b2c3d4e5f60718293a4b5c6d7e8f9',
        responseModel: 'gpt-5-2025-08-07',
        parseErrors: 0,
      },
    },
    {
      fixture: 'responses-incomplete.sse',
      // Cut at max_output_tokens 256, of which 192 reasoning; a reported 0 cached stays 0.
      expected: {
        usage: { inputTokens: 1200, cacheReadInputTokens: 0, outputTokens: 256, reasoningOutputTokens: 192 },
        terminal: 'incomplete',
        responseId: 'resp_11aa22bb33cc44dd55ee66ff77889900',
        responseModel: 'o4-mini-2025-04-16',
        parseErrors: 0,
      },
    },
    {
      fixture: 'responses-failed.sse',
      // response.failed with `usage: null`: nothing reported, nothing made up.
      expected: {
        usage: {},
        terminal: 'failed',
        responseId: 'resp_deadbeef00112233445566778899aabb',
        responseModel: 'gpt-5-2025-08-07',
        parseErrors: 0,
      },
    },
    {
      fixture: 'responses-error-flat.sse',
      // {type:"error",code,message}: id and model come from response.created.
      expected: {
        usage: {},
        terminal: 'failed',
        responseId: 'resp_0f0e0d0c0b0a09080706050403020100',
        responseModel: 'gpt-4.1-2025-04-14',
        parseErrors: 0,
      },
    },
    {
      fixture: 'responses-error-nested.sse',
      // {type:"error",error:{…}} as the first and only event.
      expected: { usage: {}, terminal: 'failed', parseErrors: 0 },
    },
    {
      fixture: 'responses-cache-write.json',
      // 9120 input = 4096 cache read + 3072 cache write + 1952 uncached; 148 output of which 64 reasoning.
      expected: {
        usage: {
          inputTokens: 9120,
          cacheReadInputTokens: 4096,
          cacheCreationInputTokens: 3072,
          outputTokens: 148,
          reasoningOutputTokens: 64,
        },
        terminal: 'completed',
        responseId: 'resp_6789abcdef0123456789abcdef012345',
        responseModel: 'gpt-5.1-2025-11-13',
        parseErrors: 0,
      },
    },
    {
      fixture: 'responses-error.json',
      expected: { usage: {}, terminal: 'failed', parseErrors: 0 },
    },
  ]);

  describeRobustness(responsesExtractor, ['response.created', 'response.completed', 'response.failed', 'error', undefined]);

  describe('streams', () => {
    const completed = readFixture('responses-completed.sse');

    it('has the usage as soon as the terminal event has passed, before the body ends', () => {
      // Codex CLI closes the connection right after reading response.completed.
      const extractor = responsesExtractor(true, { maxEventBytes: 1024 * 1024 });
      extractor.feed(completed);
      expect(extractor.state.terminal).to.equal('completed');
      expect(extractor.state.usage.outputTokens).to.equal(830);
    });

    it('reads only the terminal event of a complete stream: response.created, which it repeats, stays unread', () => {
      // Were it read, its broken JSON would count a parse error.
      const broken = Buffer.from(completed.toString('utf8').replace(/^data: \{"type":"response.created",/m, 'data: {"type":"response.created",,'));
      expect(broken.equals(completed)).to.equal(false);
      expect(extract(responsesExtractor, [broken])).to.deep.equal(extract(responsesExtractor, [completed]));
      expect(extract(responsesExtractor, [broken]).parseErrors).to.equal(0);
    });

    it('a stream cut before its terminal event takes the id and model from response.created, at its end', () => {
      const text = completed.toString('utf8');
      const cut = Buffer.from(text.slice(0, text.indexOf('event: response.completed')));
      const extractor = responsesExtractor(true, { maxEventBytes: 1024 * 1024 });
      extractor.feed(cut);
      expect(extractor.state.responseId).to.equal(undefined);
      extractor.end();
      expect(extractor.state).to.deep.equal({
        usage: {},
        responseId: 'resp_0a1b2c3d4e5f60718293a4b5c6d7e8f9',
        responseModel: 'gpt-5-2025-08-07',
        parseErrors: 0,
      });
    });

    it('what the terminal event says wins over response.created, which fills only what it left out', () => {
      const frame = (type: string, response: object) => `event: ${type}\ndata: ${JSON.stringify({ type, response })}\n\n`;
      const stream = Buffer.from(
        frame('response.created', { id: 'resp_created', model: 'model-created', usage: null }) +
          frame('response.failed', { id: 'resp_failed', usage: null }),
      );
      expect(extract(responsesExtractor, [stream])).to.deep.equal({
        usage: {},
        terminal: 'failed',
        responseId: 'resp_failed',
        responseModel: 'model-created',
        parseErrors: 0,
      });
    });

    it('reads events without `event:` lines by their data type', () => {
      const unnamed = Buffer.from(completed.toString('utf8').replace(/^event: .*\n/gm, ''));
      expect(extract(responsesExtractor, [unnamed])).to.deep.equal(extract(responsesExtractor, [completed]));
    });

    it('a terminal event over maxEventBytes: parse error, no usage, no throw', () => {
      // response.created (771 bytes of data) fits in 1000 bytes, response.completed (1253) does not.
      const state = extract(responsesExtractor, [completed], { limits: { maxEventBytes: 1000 } });
      expect(state).to.deep.equal({
        usage: {},
        responseId: 'resp_0a1b2c3d4e5f60718293a4b5c6d7e8f9',
        responseModel: 'gpt-5-2025-08-07',
        parseErrors: 1,
      });
    });

    it('a 100 MB endless terminal event: one parse error, memory bounded', () => {
      const head = 'event: response.completed\ndata: {"type":"response.completed","response":{"output":[{"text":"';
      const { state, retainedBytes } = feedEndlessFrame(responsesExtractor, head);
      expect(state).to.deep.equal({ usage: {}, parseErrors: 1 });
      expect(retainedBytes).to.be.below(8 * 1024 * 1024);
    });

    it('a terminal event that is not JSON: parse error', () => {
      const state = extract(responsesExtractor, [Buffer.from('event: response.completed\ndata: {"type":\n\n')]);
      expect(state).to.deep.equal({ usage: {}, parseErrors: 1 });
    });

    it('an unterminated terminal event at the end of the body is discarded', () => {
      const cut = completed.subarray(0, completed.length - 2);
      const state = extract(responsesExtractor, [cut]);
      expect(state.terminal).to.equal(undefined);
      expect(state.usage).to.deep.equal({});
    });
  });

  describe('token counts it does not believe', () => {
    const cases: { usage: object; expected: object; parseErrors: number }[] = [
      { usage: { input_tokens: 0, output_tokens: 0 }, expected: { inputTokens: 0, outputTokens: 0 }, parseErrors: 0 },
      { usage: { input_tokens: null, output_tokens: 7 }, expected: { outputTokens: 7 }, parseErrors: 0 },
      { usage: { input_tokens: -1, output_tokens: 7 }, expected: { outputTokens: 7 }, parseErrors: 1 },
      { usage: { input_tokens: 1.5, output_tokens: 7 }, expected: { outputTokens: 7 }, parseErrors: 1 },
      { usage: { input_tokens: '12', output_tokens: 7 }, expected: { outputTokens: 7 }, parseErrors: 1 },
      // 1e12 is the largest count believed; 1e12 + 1 is garbage.
      { usage: { input_tokens: 1e12, output_tokens: 1e12 + 1 }, expected: { inputTokens: 1e12 }, parseErrors: 1 },
      {
        usage: { input_tokens: 10, input_tokens_details: { cached_tokens: -3 }, output_tokens_details: { reasoning_tokens: 2e12 } },
        expected: { inputTokens: 10 },
        parseErrors: 2,
      },
    ];
    for (const { usage, expected, parseErrors } of cases) {
      it(JSON.stringify(usage), () => {
        const body = Buffer.from(JSON.stringify({ object: 'response', status: 'completed', usage }));
        const state = extract(responsesExtractor, [body], { streaming: false });
        expect(state).to.deep.equal({ usage: expected, terminal: 'completed', parseErrors });
      });
    }
  });

  it('a limit that bounds nothing is refused at construction, naming the option', () => {
    for (const maxEventBytes of [0, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      for (const streaming of [true, false]) {
        expect(() => responsesExtractor(streaming, { maxEventBytes })).to.throw(RangeError, /maxEventBytes/);
      }
    }
  });

  it('a non-streaming body over maxEventBytes: parse error, no usage', () => {
    const body = readFixture('responses-cache-write.json');
    const state = extract(responsesExtractor, [body], { streaming: false, limits: { maxEventBytes: 100 } });
    expect(state).to.deep.equal({ usage: {}, parseErrors: 1 });
  });
});
