/**
 * Ways to cut and reshape a byte stream for replay tests: whatever a network, a proxy or a
 * server does to the framing, what is read from the stream must not change.
 */

/** The buffer cut at the given byte offsets (sorted or not, duplicates and ends ignored). */
export function splitAt(bytes: Uint8Array, offsets: readonly number[]): Buffer[] {
  const buffer = Buffer.from(bytes);
  const cuts = [...new Set(offsets)].filter((at) => at > 0 && at < buffer.length).sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const at of [...cuts, buffer.length]) {
    pieces.push(buffer.subarray(from, at));
    from = at;
  }
  return pieces;
}

/** Pieces of `size` bytes (the last one shorter). */
export function splitEvery(bytes: Uint8Array, size: number): Buffer[] {
  const offsets: number[] = [];
  for (let at = size; at < bytes.length; at += size) offsets.push(at);
  return splitAt(bytes, offsets);
}

/** Every way to cut the buffer in two, at each byte boundary in turn. */
export function* splitsInTwo(bytes: Uint8Array): Generator<Buffer[]> {
  for (let at = 1; at < bytes.length; at++) yield splitAt(bytes, [at]);
}

/** Cut at `cuts` points drawn from `seed`: the same seed always cuts the same way. */
export function splitRandomly(bytes: Uint8Array, seed: number, cuts = 16): Buffer[] {
  const random = seededRandom(seed);
  const offsets = Array.from({ length: cuts }, () => Math.floor(random() * bytes.length));
  return splitAt(bytes, offsets);
}

/** mulberry32: a tiny, well-mixed PRNG, so that a failing split can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

export type LineEnding = 'lf' | 'cr' | 'crlf';

const LINE_ENDINGS: Record<LineEnding, string> = { lf: '\n', cr: '\r', crlf: '\r\n' };

/** Every LF of an LF-only text rewritten to another line ending. */
export function withLineEndings(bytes: Uint8Array, ending: LineEnding): Buffer {
  return Buffer.from(Buffer.from(bytes).toString('latin1').replaceAll('\n', LINE_ENDINGS[ending]), 'latin1');
}

const BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** The bytes behind a UTF-8 byte order mark. */
export function withBom(bytes: Uint8Array): Buffer {
  return Buffer.concat([BOM, bytes]);
}
