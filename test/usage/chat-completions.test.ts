import { expect } from 'chai';
import fc from 'fast-check';
import { chatCompletionsExtractor } from '../../plugin/usage/index.js';
import { countJsonParses, describeFixtures, describeRobustness, extract, feedEndlessFrame, readFixture } from './replay.js';

const sse = (...frames: string[]) => Buffer.from(frames.map((data) => `data: ${data}\n\n`).join(''));

describe('usage: OpenAI Chat Completions', () => {
  describeFixtures(chatCompletionsExtractor, [
    {
      fixture: 'chat-include-usage.sse',
      // prompt_tokens 1830 includes the 1024 cached; completion_tokens 412 includes the 256 reasoning.
      expected: {
        usage: { inputTokens: 1830, cacheReadInputTokens: 1024, outputTokens: 412, reasoningOutputTokens: 256 },
        terminal: 'completed',
        responseId: 'chatcmpl-CbT8kQe5z1YpLwR2vN0xA7mJ3uHdF',
        responseModel: 'o4-mini-2025-04-16',
        parseErrors: 0,
      },
    },
    {
      fixture: 'chat-no-usage.sse',
      // Without stream_options.include_usage nothing is reported: usage stays empty, not 0.
      expected: {
        usage: {},
        terminal: 'completed',
        responseId: 'chatcmpl-CbT9aB1c2D3e4F5g6H7i8J9k0LmNo',
        responseModel: 'gpt-4o-2024-08-06',
        parseErrors: 0,
      },
    },
    {
      fixture: 'chat-length.sse',
      // finish_reason "length" → incomplete; written with spaces (`"usage": null`) as Python servers do.
      expected: {
        usage: { inputTokens: 57, cacheReadInputTokens: 0, outputTokens: 8, reasoningOutputTokens: 0 },
        terminal: 'incomplete',
        responseId: 'chatcmpl-CbTAzz9y8x7w6v5u4t3s2r1q0PoNm',
        responseModel: 'gpt-4o-mini-2024-07-18',
        parseErrors: 0,
      },
    },
    {
      fixture: 'chat-error.sse',
      // A mid-stream {"error": {…}} frame and no [DONE].
      expected: {
        usage: {},
        terminal: 'failed',
        responseId: 'chatcmpl-CbTBq1w2e3r4t5y6u7i8o9p0AsDfG',
        responseModel: 'gpt-4o-2024-08-06',
        parseErrors: 0,
      },
    },
    {
      fixture: 'chat-completion.json',
      // 3240 prompt tokens of which 2048 cached; 96 completion tokens, none reasoning.
      expected: {
        usage: { inputTokens: 3240, cacheReadInputTokens: 2048, outputTokens: 96, reasoningOutputTokens: 0 },
        terminal: 'completed',
        responseId: 'chatcmpl-CbTC0o9i8u7y6t5r4e3w2q1a2sDfG',
        responseModel: 'gpt-4.1-2025-04-14',
        parseErrors: 0,
      },
    },
  ]);

  describeRobustness(chatCompletionsExtractor, [undefined]);

  describe('parses only the chunks that can matter', () => {
    it('the first chunk, the finish_reason chunk and the usage chunk, of 19 frames', () => {
      const bytes = readFixture('chat-include-usage.sse');
      expect(countJsonParses(() => extract(chatCompletionsExtractor, [bytes]))).to.equal(3);
    });

    const first = '{"id":"chatcmpl-1","model":"gpt-4o","choices":[]}';
    // Each row: the second chunk of a stream, and whether it must be parsed.
    const rows: [chunk: string, parsed: boolean][] = [
      ['{"choices":[{"delta":{"content":"hi"},"finish_reason":null}],"usage":null}', false],
      ['{"choices": [{"delta": {"content": "hi"}, "finish_reason": null}], "usage": null}', false],
      ['{"choices":[{"delta":{"content":"hi"},"finish_reason" :\tnull}],"usage" : null}', false],
      // The key's bytes inside a string are escaped (\"usage\"), or the string is followed by no colon.
      ['{"choices":[{"delta":{"content":"\\"usage\\": {\\"error\\": 1}"},"finish_reason":null}]}', false],
      ['{"choices":[{"delta":{"content":"usage"},"finish_reason":null}]}', false],
      ['{"choices":[{"delta":{"content":"{\\"usage\\":{\\"finish_reason\\":\\"stop\\"}}"},"finish_reason":null}]}', false],
      ['{"choices":[{"delta":{"content":"finish_reason: length {"},"finish_reason":null}]}', false],
      ['{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":null}', true],
      ['{"choices":[{"delta":{},"finish_reason" : "length"}]}', true],
      ['{"choices":[{"delta":{},"finish_reason":1}]}', true],
      ['{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}', true],
      ['{"usage":{"prompt_tokens":1,"completion_tokens":2},"choices":[]}', true],
      ['{"choices":[],"usage" :\n{"prompt_tokens":1,"completion_tokens":2}}', true],
      ['{"error":{"message":"boom"}}', true],
      ['{"error" :\t{"message":"boom"}}', true],
    ];
    for (const [chunk, parsed] of rows) {
      it(`${parsed ? 'parses' : 'skips'} ${JSON.stringify(chunk)}`, () => {
        // Multi-line data (the `"usage" :\n{` row) is sent as two data lines joined by LF.
        const bytes = Buffer.from(`data: ${first}\n\ndata: ${chunk.split('\n').join('\ndata: ')}\n\n`);
        expect(countJsonParses(() => extract(chatCompletionsExtractor, [bytes]))).to.equal(parsed ? 2 : 1);
      });
    }
  });

  it('skipping chunks by the byte check never changes what is read (property)', () => {
    // Chunk texts full of look-alikes of the keys the check looks for.
    const content = fc.oneof(
      fc.string(),
      fc.constantFrom('"usage":{', 'usage', '"finish_reason":"length"', '{"error":{}}', '\\', '"', '{', '_', 'null'),
    );
    const chunk = fc.record(
      {
        content,
        finishReason: fc.constantFrom(null, 'stop', 'length', 'content_filter', 'tool_calls'),
        usage: fc.option(fc.record({ prompt_tokens: fc.nat(), completion_tokens: fc.nat() }), { nil: undefined }),
        error: fc.boolean(),
      },
      { requiredKeys: ['content', 'finishReason'] },
    );
    // Compact, spaced (`"usage": null`) or pretty-printed over several data lines.
    const indent = fc.constantFrom(undefined, 1, '\t');
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 8 }), indent, fc.boolean(), (chunks, space, done) => {
        const frames = chunks.map(({ content, finishReason, usage, error }) => {
          const object = error
            ? { error: { message: content, type: 'server_error' } }
            : {
                id: 'chatcmpl-1',
                model: 'gpt-4o',
                choices: [{ index: 0, delta: { content }, finish_reason: finishReason }],
                usage: usage ?? null,
              };
          return `data: ${JSON.stringify(object, null, space).split('\n').join('\ndata: ')}\n\n`;
        });
        const state = extract(chatCompletionsExtractor, [Buffer.from(frames.join('') + (done ? 'data: [DONE]\n\n' : ''))]);

        const lastUsage = chunks.findLast((c) => !c.error && c.usage !== undefined)?.usage;
        const failed = chunks.some((c) => c.error);
        const cutShort = chunks.some((c) => !c.error && (c.finishReason === 'length' || c.finishReason === 'content_filter'));
        const read = chunks.some((c) => !c.error);
        expect(state).to.deep.equal({
          usage: lastUsage ? { inputTokens: lastUsage.prompt_tokens, outputTokens: lastUsage.completion_tokens } : {},
          ...(failed ? { terminal: 'failed' } : done ? { terminal: cutShort ? 'incomplete' : 'completed' } : {}),
          ...(read ? { responseId: 'chatcmpl-1', responseModel: 'gpt-4o' } : {}),
          parseErrors: 0,
        });
      }),
      { numRuns: 500 },
    );
  });

  describe('streams', () => {
    it('any choice cut short makes the response incomplete (n = 2)', () => {
      const state = extract(chatCompletionsExtractor, [
        sse(
          '{"id":"chatcmpl-2","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}',
          '{"id":"chatcmpl-2","model":"gpt-4o","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
          '{"id":"chatcmpl-2","model":"gpt-4o","choices":[{"index":1,"delta":{},"finish_reason":"content_filter"}]}',
          '[DONE]',
        ),
      ]);
      expect(state.terminal).to.equal('incomplete');
    });

    it('takes id and model from a later chunk when the first has empty ones (Azure prompt filter results)', () => {
      const state = extract(chatCompletionsExtractor, [
        sse(
          '{"id":"","model":"","object":"","choices":[],"prompt_filter_results":[{"prompt_index":0}]}',
          '{"id":"chatcmpl-3","model":"gpt-4o-2024-11-20","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}',
          '{"id":"chatcmpl-3","model":"gpt-4o-2024-11-20","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}',
          '[DONE]',
        ),
      ]);
      expect(state).to.deep.equal({
        usage: {},
        terminal: 'completed',
        responseId: 'chatcmpl-3',
        responseModel: 'gpt-4o-2024-11-20',
        parseErrors: 0,
      });
    });

    it('an error stays failed when [DONE] follows it', () => {
      const state = extract(chatCompletionsExtractor, [sse('{"error":{"message":"boom","type":"server_error"}}', '[DONE]')]);
      expect(state.terminal).to.equal('failed');
    });

    it('keeps the usage of a stream cut after its usage chunk, without a terminal', () => {
      const bytes = readFixture('chat-include-usage.sse');
      const cut = bytes.subarray(0, bytes.indexOf('data: [DONE]'));
      const state = extract(chatCompletionsExtractor, [cut]);
      expect(state.terminal).to.equal(undefined);
      expect(state.usage.outputTokens).to.equal(412);
    });

    it('a 100 MB endless chunk: one parse error, memory bounded', () => {
      const { state, retainedBytes } = feedEndlessFrame(chatCompletionsExtractor, 'data: {"choices":[{"delta":{"content":"');
      expect(state).to.deep.equal({ usage: {}, parseErrors: 1 });
      expect(retainedBytes).to.be.below(8 * 1024 * 1024);
    });
  });
});
