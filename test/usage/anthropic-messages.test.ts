import { expect } from 'chai';
import { anthropicMessagesExtractor } from '../../plugin/usage/index.js';
import { countJsonParses, describeFixtures, describeRobustness, extract, feedEndlessFrame, readFixture } from './replay.js';

const sse = (...frames: [name: string, data: object][]) =>
  Buffer.from(frames.map(([name, data]) => `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`).join(''));

const messageStart = (usage: object) =>
  ['message_start', { type: 'message_start', message: { id: 'msg_1', model: 'claude-sonnet-4-5', usage } }] as [string, object];
const messageDelta = (stopReason: string | null, usage: object) =>
  ['message_delta', { type: 'message_delta', delta: { stop_reason: stopReason }, usage }] as [string, object];
const messageStop: [string, object] = ['message_stop', { type: 'message_stop' }];

describe('usage: Anthropic Messages', () => {
  describeFixtures(anthropicMessagesExtractor, [
    {
      fixture: 'anthropic-cache.sse',
      // 1200 input + 300 cache read + 100 cache creation = 1600; output 1 at message_start, 503 at message_delta.
      expected: {
        usage: { inputTokens: 1600, cacheReadInputTokens: 300, cacheCreationInputTokens: 100, outputTokens: 503 },
        terminal: 'completed',
        responseId: 'msg_01XFDUDYJgAACzvnptvVoYEL',
        responseModel: 'claude-sonnet-4-5-20250929',
        parseErrors: 0,
      },
    },
    {
      fixture: 'anthropic-max-tokens.sse',
      // 25 input + 0 + 0 = 25; stop_reason max_tokens → incomplete, with output_tokens 1024 (thinking included).
      expected: {
        usage: { inputTokens: 25, cacheReadInputTokens: 0, cacheCreationInputTokens: 0, outputTokens: 1024 },
        terminal: 'incomplete',
        responseId: 'msg_01Hq8sZ6vLkT3nWc2mRbY4pE',
        responseModel: 'claude-opus-4-1-20250805',
        parseErrors: 0,
      },
    },
    {
      fixture: 'anthropic-error.sse',
      // overloaded_error mid-stream: 4210 input + 2048 cache read + 0 = 6258. No output count: the
      // 1 in message_start is a placeholder (billed as one token, it under-charged the request).
      expected: {
        usage: { inputTokens: 6258, cacheReadInputTokens: 2048, cacheCreationInputTokens: 0 },
        terminal: 'failed',
        responseId: 'msg_01EaT5kP9qWz3xYb7nLc2dVf',
        responseModel: 'claude-haiku-4-5-20251001',
        parseErrors: 0,
      },
    },
    {
      fixture: 'anthropic-message.json',
      // 87 input + 0 cache read + 12450 cache creation = 12537.
      expected: {
        usage: { inputTokens: 12537, cacheReadInputTokens: 0, cacheCreationInputTokens: 12450, outputTokens: 212 },
        terminal: 'completed',
        responseId: 'msg_01JbQ2wE3rT4yU5iO6pA7sD8',
        responseModel: 'claude-sonnet-4-5-20250929',
        parseErrors: 0,
      },
    },
    {
      fixture: 'anthropic-error.json',
      expected: { usage: {}, terminal: 'failed', parseErrors: 0 },
    },
  ]);

  describeRobustness(anthropicMessagesExtractor, ['message_start', 'message_delta', 'message_stop', 'error']);

  describe('counters are cumulative', () => {
    const rows: { frames: [string, object][]; expected: object; note: string }[] = [
      {
        note: 'output 1, then 10, then 25 → 25 (not 36)',
        frames: [
          messageStart({ input_tokens: 100, output_tokens: 1 }),
          messageDelta(null, { output_tokens: 10 }),
          messageDelta('end_turn', { output_tokens: 25 }),
        ],
        expected: { inputTokens: 100, outputTokens: 25 },
      },
      {
        note: 'input counters repeated in message_delta replace the earlier ones: 150 + 40 + 10 = 200',
        frames: [
          messageStart({ input_tokens: 100, cache_read_input_tokens: 40, cache_creation_input_tokens: 10, output_tokens: 1 }),
          messageDelta('end_turn', { input_tokens: 150, output_tokens: 30 }),
        ],
        expected: { inputTokens: 200, cacheReadInputTokens: 40, cacheCreationInputTokens: 10, outputTokens: 30 },
      },
      {
        note: 'no cache counters at all (no prompt caching): input is input_tokens alone',
        frames: [messageStart({ input_tokens: 12, output_tokens: 1 }), messageDelta('end_turn', { output_tokens: 7 })],
        expected: { inputTokens: 12, outputTokens: 7 },
      },
      {
        note: 'cache counters without input_tokens: the total is not known, so not made up',
        frames: [messageStart({ cache_read_input_tokens: 40 }), messageDelta('end_turn', { output_tokens: 7 })],
        expected: { cacheReadInputTokens: 40, outputTokens: 7 },
      },
    ];
    for (const { note, frames, expected } of rows) {
      it(note, () => {
        const state = extract(anthropicMessagesExtractor, [sse(...frames, messageStop)]);
        expect(state.usage).to.deep.equal(expected);
        expect(state.terminal).to.equal('completed');
      });
    }
  });

  describe('stop reasons', () => {
    const rows: [stopReason: string, terminal: string][] = [
      ['end_turn', 'completed'],
      ['stop_sequence', 'completed'],
      ['tool_use', 'completed'],
      ['pause_turn', 'completed'],
      ['refusal', 'completed'],
      ['max_tokens', 'incomplete'],
      ['model_context_window_exceeded', 'incomplete'],
    ];
    for (const [stopReason, terminal] of rows) {
      it(`${stopReason} → ${terminal}`, () => {
        const streamed = extract(anthropicMessagesExtractor, [
          sse(messageStart({ input_tokens: 1 }), messageDelta(stopReason, { output_tokens: 2 }), messageStop),
        ]);
        const body = Buffer.from(JSON.stringify({ type: 'message', id: 'msg_1', stop_reason: stopReason, usage: {} }));
        const whole = extract(anthropicMessagesExtractor, [body], { streaming: false });
        expect([streamed.terminal, whole.terminal]).to.deep.equal([terminal, terminal]);
      });
    }

    it('no terminal before message_stop (a stream cut after message_delta)', () => {
      const state = extract(anthropicMessagesExtractor, [sse(messageStart({ input_tokens: 1 }), messageDelta('end_turn', { output_tokens: 2 }))]);
      expect(state.terminal).to.equal(undefined);
      expect(state.usage).to.deep.equal({ inputTokens: 1, outputTokens: 2 });
    });
  });

  describe('skips what carries no usage', () => {
    it('parses message_start and message_delta only, never a content block or a ping', () => {
      const bytes = readFixture('anthropic-cache.sse');
      expect(countJsonParses(() => extract(anthropicMessagesExtractor, [bytes]))).to.equal(2);
    });

    it('ignores frames without an event name, as the SDK does', () => {
      const state = extract(anthropicMessagesExtractor, [
        Buffer.from('data: {"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":5}}}\n\n'),
      ]);
      expect(state).to.deep.equal({ usage: {}, parseErrors: 0 });
    });

    it('a 100 MB endless content_block_delta: nothing held, no error', () => {
      const head = 'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"';
      const { state, retainedBytes } = feedEndlessFrame(anthropicMessagesExtractor, head);
      expect(state).to.deep.equal({ usage: {}, parseErrors: 0 });
      expect(retainedBytes).to.be.below(8 * 1024 * 1024);
    });

    it('a 100 MB endless message_start: one parse error, memory bounded', () => {
      const { state, retainedBytes } = feedEndlessFrame(anthropicMessagesExtractor, 'event: message_start\ndata: {"message":{"id":"');
      expect(state).to.deep.equal({ usage: {}, parseErrors: 1 });
      expect(retainedBytes).to.be.below(8 * 1024 * 1024);
    });
  });
});
