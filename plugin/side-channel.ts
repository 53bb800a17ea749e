/**
 * The parsing path: a copy of the upstream body on its way to the usage extractor, decompressed
 * here when the upstream compressed it. The client always gets the upstream's own bytes; nothing
 * on this path can touch them or throw into them.
 */
import zlib from 'node:zlib';
import type { Transform } from 'node:stream';
import type { UsageExtractor } from './usage/types.js';

/**
 * Codings this gateway can decode on the side (Node 20 has no zstd). The upstream request's
 * accept-encoding is narrowed to these, so the usage is always readable.
 */
export const DECODABLE_ENCODINGS = ['gzip', 'deflate', 'br'] as const;

/**
 * A compressed body may expand by at most this factor (plus a small allowance) before decoding
 * stops: a decompression bomb must not cost unbounded CPU. Text SSE compresses 5-20x.
 */
const MAX_EXPANSION = 100;
const EXPANSION_ALLOWANCE = 1024 * 1024;

export interface SideChannel {
  write(chunk: Buffer): void;
  /**
   * Resolves once the extractor has seen everything written (decoding is asynchronous). `cut`:
   * the body stopped before its end (the client left, the upstream broke).
   */
  end(cut: boolean): Promise<void>;
  /** True when the body could not be decoded: the usage is then missing. */
  readonly failed: boolean;
}

export function sideChannel(extractor: UsageExtractor, contentEncoding: string | undefined): SideChannel {
  const coding = contentEncoding?.trim().toLowerCase();
  if (coding === undefined || coding === '' || coding === 'identity') return direct(extractor);
  const decoder = createDecoder(coding);
  return decoder ? decoded(extractor, decoder) : undecodable(extractor);
}

function createDecoder(coding: string): Transform | undefined {
  switch (coding) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return undefined;
  }
}

/** Identity: the extractor sees each chunk synchronously, as it passes. */
function direct(extractor: UsageExtractor): SideChannel {
  return {
    failed: false,
    write: (chunk) => extractor.feed(chunk),
    end: () => {
      extractor.end();
      return Promise.resolve();
    },
  };
}

function undecodable(extractor: UsageExtractor): SideChannel {
  return {
    failed: true,
    write: () => {},
    end: () => {
      extractor.end();
      return Promise.resolve();
    },
  };
}

function decoded(extractor: UsageExtractor, decoder: Transform): SideChannel {
  let compressed = 0;
  let expanded = 0;
  let failed = false;
  let cut = false;
  const done = new Promise<void>((resolve) => {
    decoder.on('data', (chunk: Buffer) => {
      expanded += chunk.length;
      if (expanded > compressed * MAX_EXPANSION + EXPANSION_ALLOWANCE) {
        failed = true;
        decoder.destroy();
        return;
      }
      extractor.feed(chunk);
    });
    decoder.on('error', (error: NodeJS.ErrnoException) => {
      // A body cut short stops in the middle of its compressed data: zlib reports the missing
      // end (Z_BUF_ERROR, "unexpected end of file"), but what came before was decoded.
      if (!(cut && error.code === 'Z_BUF_ERROR')) failed = true;
    });
    decoder.on('close', () => {
      extractor.end();
      resolve();
    });
  });
  return {
    get failed() {
      return failed;
    },
    write: (chunk) => {
      if (failed || decoder.destroyed) return;
      compressed += chunk.length;
      decoder.write(chunk);
    },
    end: (bodyCut) => {
      cut = bodyCut;
      if (!decoder.destroyed) decoder.end();
      return done;
    },
  };
}
