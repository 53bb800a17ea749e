/**
 * Replays a recorded response through a usage extractor under every framing a network, a proxy
 * or a server may give it, and checks that what is extracted never changes.
 */
import { readFileSync } from 'node:fs';
import { expect } from 'chai';
import fc from 'fast-check';
import type { ExtractionState, ExtractorFactory } from '../../plugin/usage/index.js';
import { splitAt, splitEvery, splitRandomly, splitsInTwo, withBom, withLineEndings } from '../support/chunking.js';

const DEFAULT_LIMITS = { maxEventBytes: 8 * 1024 * 1024 };

export function readFixture(name: string): Buffer {
  return readFileSync(new URL(`../fixtures/streams/${name}`, import.meta.url));
}

/** Feeds the chunks, ends the body, returns what was extracted. */
export function extract(
  factory: ExtractorFactory,
  chunks: Iterable<Uint8Array>,
  { streaming = true, limits = DEFAULT_LIMITS } = {},
): ExtractionState {
  const extractor = factory(streaming, limits);
  for (const chunk of chunks) extractor.feed(chunk);
  extractor.end();
  return extractor.state;
}

export interface FixtureCase {
  /** A file under test/fixtures/streams: `.sse` is read as a stream, `.json` as a whole body. */
  fixture: string;
  expected: ExtractionState;
}

/** One `describe` per fixture, one `it` per framing. */
export function describeFixtures(factory: ExtractorFactory, cases: readonly FixtureCase[]): void {
  for (const { fixture, expected } of cases) {
    describe(fixture, () => {
      const bytes = readFixture(fixture);
      const streaming = fixture.endsWith('.sse');
      const read = (chunks: Iterable<Uint8Array>) => extract(factory, chunks, { streaming });

      it('whole', () => {
        expect(read([bytes])).to.deep.equal(expected);
      });
      it('one byte at a time (multi-byte UTF-8 split everywhere)', () => {
        expect(read(splitEvery(bytes, 1))).to.deep.equal(expected);
      });
      it('cut in two at every byte boundary', () => {
        for (const chunks of splitsInTwo(bytes)) expect(read(chunks)).to.deep.equal(expected);
      });
      it('cut at random points (seeded)', () => {
        for (let seed = 1; seed <= 50; seed++) expect(read(splitRandomly(bytes, seed))).to.deep.equal(expected);
      });
      it('any chunking reads as the whole (property)', () => {
        fc.assert(
          fc.property(fc.array(fc.nat({ max: bytes.length }), { maxLength: 40 }), (offsets) => {
            expect(read(splitAt(bytes, offsets))).to.deep.equal(expected);
          }),
          { numRuns: 200 },
        );
      });
      it('behind a byte order mark', () => {
        expect(read(splitEvery(withBom(bytes), 1))).to.deep.equal(expected);
      });
      // JSON allows CR and CRLF as whitespace too, so every fixture takes them.
      for (const ending of ['cr', 'crlf'] as const) {
        it(`with ${ending.toUpperCase()} line endings`, () => {
          const converted = withLineEndings(bytes, ending);
          expect(read([converted])).to.deep.equal(expected);
          for (let seed = 1; seed <= 20; seed++) expect(read(splitRandomly(converted, seed))).to.deep.equal(expected);
        });
      }
    });
  }
}

const MiB = 1024 * 1024;

/**
 * Feeds `head` and then `totalBytes` of 'a' that never end the frame, in 64 KiB chunks, with
 * maxEventBytes at 1 MiB. Returns the state and how much Buffer memory grew while the extractor
 * was still alive (Node counts Buffer memory in memoryUsage().arrayBuffers).
 */
export function feedEndlessFrame(
  factory: ExtractorFactory,
  head: string,
  { streaming = true, totalBytes = 100 * MiB } = {},
): { state: ExtractionState; retainedBytes: number } {
  const extractor = factory(streaming, { maxEventBytes: MiB });
  const filler = Buffer.alloc(64 * 1024, 'a');
  const before = process.memoryUsage().arrayBuffers;
  extractor.feed(Buffer.from(head));
  for (let fed = 0; fed < totalBytes; fed += filler.length) extractor.feed(filler);
  const retainedBytes = process.memoryUsage().arrayBuffers - before;
  extractor.end();
  return { state: extractor.state, retainedBytes };
}

/** Bounded memory and no throw, whatever arrives: an endless frame, arbitrary bytes, odd JSON. */
export function describeRobustness(factory: ExtractorFactory, wantedEvents: readonly (string | undefined)[]): void {
  describe('robustness', () => {
    it('a 100 MB endless JSON body: parse error counted, memory bounded', () => {
      const { state, retainedBytes } = feedEndlessFrame(factory, '{"id":"', { streaming: false });
      expect(state).to.deep.equal({ usage: {}, parseErrors: 1 });
      expect(retainedBytes).to.be.below(8 * MiB);
    });

    it('arbitrary bytes never make feed() or end() throw', () => {
      for (const streaming of [true, false]) {
        fc.assert(
          fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (chunks) => {
            const state = extract(factory, chunks, { streaming, limits: { maxEventBytes: 256 } });
            expect(state.parseErrors).to.be.a('number');
          }),
          { numRuns: 300 },
        );
      }
    });

    it('any JSON in the wanted events never makes feed() or end() throw', () => {
      const frame = fc
        .tuple(fc.constantFrom(...wantedEvents), fc.jsonValue())
        .map(([name, value]) => `${name === undefined ? '' : `event: ${name}\n`}data: ${JSON.stringify(value)}\n\n`);
      fc.assert(
        fc.property(fc.array(frame, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 8 }), (frames, offsets) => {
          const bytes = Buffer.from(frames.join(''));
          const state = extract(factory, splitAt(bytes, offsets));
          expect(state.parseErrors).to.be.a('number');
        }),
        { numRuns: 300 },
      );
    });
  });
}

/** How many times `run` calls JSON.parse: the hot path must parse only the events that matter. */
export function countJsonParses(run: () => void): number {
  const parse = JSON.parse;
  let calls = 0;
  JSON.parse = (...args: Parameters<typeof JSON.parse>) => {
    calls++;
    return parse(...args);
  };
  try {
    run();
  } finally {
    JSON.parse = parse;
  }
  return calls;
}
