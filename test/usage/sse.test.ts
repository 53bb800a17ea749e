import { expect } from 'chai';
import { createParser } from 'eventsource-parser';
import fc from 'fast-check';
import { createSseScanner, type SseScanError } from '../../plugin/sse.js';
import { splitAt, splitEvery, splitsInTwo, withLineEndings } from '../support/chunking.js';

type Event = [type: string, data: string];

function scan(chunks: Iterable<Uint8Array>, { events: wanted, maxEventBytes = 1024 * 1024 }: { events?: string[]; maxEventBytes?: number } = {}) {
  const events: Event[] = [];
  const errors: SseScanError['type'][] = [];
  const scanner = createSseScanner({
    events: wanted,
    maxEventBytes,
    onEvent: (type, data) => events.push([type, data.toString('utf8')]),
    onError: (error) => errors.push(error.type),
  });
  for (const chunk of chunks) scanner.feed(chunk);
  scanner.reset();
  return { events, errors };
}

const bytes = (text: string) => Buffer.from(text, 'utf8');

describe('SSE scanner', () => {
  describe('WHATWG parsing rules', () => {
    // https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation
    const cases: [note: string, stream: string, events: Event[]][] = [
      ['one event', 'data: hello\n\n', [['message', 'hello']]],
      ['no space after the colon', 'data:hello\n\n', [['message', 'hello']]],
      ['only one space is stripped', 'data:  two\n\n', [['message', ' two']]],
      ['a colon in the value', 'data: a:b\n\n', [['message', 'a:b']]],
      ['data lines joined with LF', 'data: a\ndata:\ndata: b\n\n', [['message', 'a\n\nb']]],
      ['"data" alone is the field with an empty value', 'data\n\n', [['message', '']]],
      ['an empty value', 'data:\n\n', [['message', '']]],
      ['two events', 'data: x\n\ndata: y\n\n', [['message', 'x'], ['message', 'y']]],
      ['an event name', 'event: delta\ndata: x\n\n', [['delta', 'x']]],
      ['an event name without the space', 'event:delta\ndata: x\n\n', [['delta', 'x']]],
      ['the last event name wins', 'event: a\nevent: b\ndata: x\n\n', [['b', 'x']]],
      ['an event name after the data', 'data: x\nevent: late\n\n', [['late', 'x']]],
      ['"event" alone and an empty name are the default type', 'event\ndata: x\n\nevent:\ndata: y\n\n', [['message', 'x'], ['message', 'y']]],
      ['the type ends with its event', 'event: ping\n\ndata: x\n\n', [['message', 'x']]],
      ['an event without data is not dispatched', 'event: ping\n\n', []],
      ['comments', ': keep-alive\ndata: x\n:\n\n', [['message', 'x']]],
      ['id, retry and unknown fields are ignored', 'id: 7\nretry: 1000\nfoo: bar\nid\ndata: x\n\n', [['message', 'x']]],
      ['field names are exact', 'datax: 1\nDATA: 2\ndata : 3\n eventx: 4\n\n', []],
      ['blank lines before the first event', '\n\n\ndata: x\n\n', [['message', 'x']]],
      ['a last event without its blank line is discarded', 'data: x\n\ndata: y\n', [['message', 'x']]],
      ['a last line without its line end is discarded', 'data: x\n\ndata: y', [['message', 'x']]],
      ['multi-byte UTF-8', 'event: ünï\ndata: 東京 🗼 ⛩️\n\n', [['ünï', '東京 🗼 ⛩️']]],
      ['a BOM at the start is stripped', '\uFEFFdata: x\n\n', [['message', 'x']]],
      ['only once: a second BOM is part of a field name', '\uFEFF\uFEFFdata: x\n\ndata: y\n\n', [['message', 'y']]],
      ['a BOM elsewhere is data', 'data: \uFEFFx\n\n', [['message', '\uFEFFx']]],
    ];
    for (const [note, stream, events] of cases) {
      describe(note, () => {
        for (const ending of ['lf', 'cr', 'crlf'] as const) {
          const input = withLineEndings(bytes(stream), ending);
          it(`${ending.toUpperCase()}: whole, byte by byte, and cut in two at every byte`, () => {
            expect(scan([input]).events).to.deep.equal(events);
            expect(scan(splitEvery(input, 1)).events).to.deep.equal(events);
            for (const chunks of splitsInTwo(input)) expect(scan(chunks).events).to.deep.equal(events);
          });
        }
      });
    }

    it('mixed line endings in one stream', () => {
      const input = bytes('data: a\rdata: b\r\ndata: c\n\r\n');
      for (const chunks of [[input], ...splitsInTwo(input)]) {
        expect(scan(chunks).events).to.deep.equal([['message', 'a\nb\nc']]);
      }
    });

    it('a CR ending a chunk and an LF starting the next are one line end', () => {
      // Were they two, the LF would end an empty line and dispatch "a" alone.
      const { events } = scan([bytes('data: a\r'), bytes('\ndata: b\r'), bytes('\n\r'), bytes('\n')]);
      expect(events).to.deep.equal([['message', 'a\nb']]);
    });

    it('takes plain Uint8Arrays as well as Buffers', () => {
      const input = bytes('event: usage\ndata: 東京\n\n');
      const chunks = splitEvery(input, 1).map((chunk) => new Uint8Array(chunk));
      expect(scan(chunks).events).to.deep.equal([['usage', '東京']]);
    });

    it('a CR as the last byte of the stream ends its line', () => {
      expect(scan([bytes('data: a\r\r')]).events).to.deep.equal([['message', 'a']]);
    });

    it('a BOM split across chunks is stripped; bytes that only began like one are kept', () => {
      const bom = Buffer.from([0xef, 0xbb, 0xbf]);
      expect(scan([bom.subarray(0, 1), bom.subarray(1, 2), Buffer.concat([bom.subarray(2), bytes('data: x\n\n')])]).events).to.deep.equal([
        ['message', 'x'],
      ]);
      // "\xEF\xBB" + "data: x" is a field with a strange name: ignored, as a spec parser does.
      expect(scan([bom.subarray(0, 2), bytes('data: x\n\ndata: y\n\n')]).events).to.deep.equal([['message', 'y']]);
    });

    it('reads like eventsource-parser, under any chunking (property)', () => {
      const text = fc.string({ unit: 'grapheme', maxLength: 12 }).filter((s) => !/[\r\n]/.test(s));
      const line = fc.oneof(
        text.map((s) => `data: ${s}`),
        text.map((s) => `data:${s}`),
        fc.constantFrom('data', 'data:', 'event', 'event:', '', '', ':', 'id: 1', 'retry: 5', 'x: y', 'datum: z'),
        text.map((s) => `event: ${s}`),
        text.map((s) => `: ${s}`),
      );
      const lineEnd = fc.constantFrom('\n', '\r', '\r\n');
      const stream = fc.array(fc.tuple(line, lineEnd), { maxLength: 30 }).map((lines) => lines.map(([l, e]) => l + e).join(''));
      fc.assert(
        fc.property(stream, fc.array(fc.nat(), { maxLength: 12 }), (text, offsets) => {
          // eventsource-parser holds a final CR until it knows no LF follows: end on a comment line.
          const input = `${text}:\n`;
          const expected: Event[] = [];
          createParser({ onEvent: ({ event, data }) => expected.push([event ?? 'message', data]) }).feed(input);
          const cut = offsets.map((offset) => offset % (Buffer.byteLength(input) + 1));
          expect(scan(splitAt(bytes(input), cut)).events).to.deep.equal(expected);
        }),
        { numRuns: 1000 },
      );
    });
  });

  describe('skipping events', () => {
    const stream = bytes('event: delta\ndata: 1\n\nevent: usage\ndata: 2\ndata: 3\n\ndata: 4\n\nevent: ping\n\n');

    it('hands over the wanted types only; "message" is the type of unnamed events', () => {
      expect(scan([stream], { events: ['usage'] }).events).to.deep.equal([['usage', '2\n3']]);
      expect(scan([stream], { events: ['message', 'ping'] }).events).to.deep.equal([['message', '4']]);
      expect(scan([stream], { events: [] }).events).to.deep.equal([]);
    });

    it('a skipped event may be of any size; later wanted events still come', () => {
      const huge = `event: delta\ndata: ${'x'.repeat(5000)}\n\nevent: usage\ndata: 2\n\n`;
      for (const chunks of [[bytes(huge)], splitEvery(bytes(huge), 7)]) {
        const result = scan(chunks, { events: ['usage'], maxEventBytes: 100 });
        expect(result).to.deep.equal({ events: [['usage', '2']], errors: [] });
      }
    });

    it('a wanted event over maxEventBytes: one error, and the stream is no longer scanned', () => {
      const input = bytes(`data: ${'x'.repeat(101)}\n\ndata: after\n\n`);
      for (const chunks of [[input], splitEvery(input, 7)]) {
        expect(scan(chunks, { maxEventBytes: 100 })).to.deep.equal({ events: [], errors: ['event-too-large'] });
      }
      // Data lines add up, and so does the type.
      expect(scan([bytes(`data: ${'x'.repeat(60)}\ndata: ${'y'.repeat(60)}\n\n`)], { maxEventBytes: 100 }).errors).to.deep.equal([
        'event-too-large',
      ]);
      expect(scan([bytes(`event: ${'n'.repeat(101)}\ndata: x\n\n`)], { maxEventBytes: 100 }).errors).to.deep.equal(['event-too-large']);
    });

    it('reset() starts a new stream after a stop', () => {
      const events: string[] = [];
      const scanner = createSseScanner({ maxEventBytes: 10, onEvent: (_type, data) => events.push(data.toString()), onError: () => {} });
      scanner.feed(bytes(`data: ${'x'.repeat(20)}\n\n`));
      scanner.feed(bytes('data: lost\n\n'));
      scanner.reset();
      scanner.feed(bytes('\uFEFFdata: found\n\n'));
      expect(events).to.deep.equal(['found']);
    });

    it('the type is the last `event:` line, even after the data lines', () => {
      // Skipped under "message", then typed "usage": the data is gone, so this is reported.
      expect(scan([bytes('data: x\nevent: usage\n\ndata: y\n\n')], { events: ['usage'] })).to.deep.equal({
        events: [],
        errors: ['late-event-type'],
      });
      // Read as "usage", then typed "other": not handed over.
      expect(scan([bytes('event: usage\ndata: x\nevent: other\n\n')], { events: ['usage'] })).to.deep.equal({ events: [], errors: [] });
    });

    it('keeps no reference to a fed chunk: the caller may reuse it at once', () => {
      const input = bytes('event: usage\ndata: {"input_tokens":1200}\ndata: {"cached":300}\n\nevent: usage\ndata: 🗼\n\n');
      const expected: Event[] = [
        ['usage', '{"input_tokens":1200}\n{"cached":300}'],
        ['usage', '🗼'],
      ];
      for (const chunks of splitsInTwo(input)) {
        const events: Event[] = [];
        const scanner = createSseScanner({
          events: ['usage'],
          maxEventBytes: 1024,
          onEvent: (type, data) => events.push([type, data.toString()]),
          onError: () => {},
        });
        for (const chunk of chunks) {
          const reused = Buffer.from(chunk);
          scanner.feed(reused);
          reused.fill('#');
        }
        expect(events).to.deep.equal(expected);
      }
    });
  });

  describe('bounded memory', () => {
    const MiB = 1024 * 1024;
    const endless = (head: string, events?: string[], filler = Buffer.alloc(64 * 1024, 'a')) => {
      const errors: string[] = [];
      const scanner = createSseScanner({ events, maxEventBytes: MiB, onEvent: () => {}, onError: (error) => errors.push(error.type) });
      let mostBuffered = 0;
      scanner.feed(bytes(head));
      for (let fed = 0; fed < 100 * MiB; fed += filler.length) {
        scanner.feed(filler);
        mostBuffered = Math.max(mostBuffered, scanner.bufferedBytes);
      }
      return { errors, mostBuffered };
    };

    it('a 100 MB endless wanted data line holds at most maxEventBytes, then stops with one error', () => {
      const { errors, mostBuffered } = endless('event: usage\ndata: ', ['usage']);
      expect(errors).to.deep.equal(['event-too-large']);
      expect(mostBuffered).to.be.at.most(MiB);
    });

    it('100 MB of empty data lines: each adds its joining LF, so the same', () => {
      const { errors, mostBuffered } = endless('event: usage\n', ['usage'], Buffer.from('data:\n'.repeat(10_000)));
      expect(errors).to.deep.equal(['event-too-large']);
      expect(mostBuffered).to.be.at.most(MiB);
    });

    it('a 100 MB endless event name: the same', () => {
      const { errors, mostBuffered } = endless('event: ');
      expect(errors).to.deep.equal(['event-too-large']);
      expect(mostBuffered).to.be.at.most(MiB);
    });

    const nothingHeld: [what: string, head: string, held: number][] = [
      ['skipped data line', 'event: delta\ndata: ', 0],
      ['comment', ': ', 0],
      ['unknown field', 'x-padding: ', 0],
      ['field name', 'x', 0],
    ];
    for (const [what, head, held] of nothingHeld) {
      it(`a 100 MB endless ${what}: nothing held, no error`, () => {
        const { errors, mostBuffered } = endless(head, ['usage']);
        expect(errors).to.deep.equal([]);
        expect(mostBuffered).to.equal(held);
      });
    }
  });

  it('arbitrary bytes never make feed() or reset() throw', () => {
    const input = fc.array(fc.oneof(fc.uint8Array({ maxLength: 32 }), fc.constantFrom(...['data:', 'event:', '\r', '\n', '\uFEFF', ':'].map(bytes))), {
      maxLength: 40,
    });
    fc.assert(
      fc.property(input, fc.option(fc.constant<string[]>(['message'])), (chunks, events) => {
        scan(chunks, { events: events ?? undefined, maxEventBytes: 64 });
      }),
      { numRuns: 1000 },
    );
  });
});
