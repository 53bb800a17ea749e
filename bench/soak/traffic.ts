/**
 * The soak's traffic: one fixture stream whose usage and price are known, the fake upstream that
 * serves it (whole, cut, or stalled), streaming clients each on a connection of its own (no
 * shared http.Agent), and the book of what every request must have cost.
 *
 * Kinds of request (the upstream reads the kind from the body's metadata):
 *   completed  the whole stream, terminal event included     → charged its cost (COMPLETED_COST)
 *   cancel     the upstream stalls before the terminal event, the client leaves after its first
 *              bytes                                          → cancelled, no usage: the reservation
 *   reset      the upstream closes the connection before the terminal event
 *                                                             → upstream_error after a 200, no usage: the reservation
 *   long       the upstream stalls before the terminal event, the client waits (graceful shutdown:
 *              cut at the deadline)                           → upstream_error, no usage: the reservation
 * The reservation of a request is worked out here from its body's length and max_output_tokens
 * (plugin/estimate.ts's rule: body bytes as input tokens + the output limit, at full prices).
 */
import http from 'node:http';
import { TEST_PRICING_FILE } from '../../test/support/pricing.js';
import { responsesStream, SSE_HEADERS } from '../../test/support/provider-streams.js';
import type { ReceivedRequest, Reply } from '../../test/support/upstream.js';
import type { Expectation } from '../../test/support/settlement.js';

export type Kind = 'completed' | 'cancel' | 'reset' | 'long';

export const MODEL = 'gpt-4.1';
const MAX_OUTPUT_TOKENS = 1000;
const USAGE = { input: 1200, cached: 300, output: 450, reasoning: 100 };
const TEXT = 'Every micro-credit accounted for, under load. '.repeat(20);
/** What the upstream sends for a whole response, and what a client must receive, byte for byte. */
export const STREAM = responsesStream(TEXT, USAGE);

/** Prices as integer micro-credits per 1M tokens (the test table gives credits per 1M tokens). */
const PRICE = TEST_PRICING_FILE.models[MODEL];
const perMillion = (credits: number) => Math.round(credits * 1_000_000);
const ceilDiv = (a: number, b: number) => Math.floor((a + b - 1) / b);

/**
 * non-cached 900 × 2 + cached 300 × 0.5 + output 450 × 8 (reasoning is part of output)
 * = 1800 + 150 + 3600 = 5550 µcr.
 */
export const COMPLETED_COST = ceilDiv(
  (USAGE.input - USAGE.cached) * perMillion(PRICE.input) + USAGE.cached * perMillion(PRICE.cached_input) + USAGE.output * perMillion(PRICE.output),
  1_000_000,
);

export function requestBody(kind: Kind): Buffer {
  return Buffer.from(
    JSON.stringify({ model: MODEL, input: 'Tell me about metering.', stream: true, max_output_tokens: MAX_OUTPUT_TOKENS, metadata: { soak: kind } }),
  );
}

/** The upper bound the gateway reserves: body bytes × input price + output limit × output price, rounded up once. */
export function reservationOf(kind: Kind): number {
  return ceilDiv(requestBody(kind).length * perMillion(PRICE.input) + MAX_OUTPUT_TOKENS * perMillion(PRICE.output), 1_000_000);
}

/** What a request of this kind must be charged once settled. */
export function expectedCharge(kind: Kind): number {
  return kind === 'completed' ? COMPLETED_COST : reservationOf(kind);
}

/** STREAM in `count` writes, at SSE event boundaries; the terminal event is always the last write alone. */
export function chunked(count: number): Buffer[] {
  const events: Buffer[] = [];
  let start = 0;
  for (let at = STREAM.indexOf('\n\n'); at !== -1; at = STREAM.indexOf('\n\n', start)) {
    events.push(STREAM.subarray(start, at + 2));
    start = at + 2;
  }
  const terminal = events.pop()!;
  const groups = Math.max(1, count - 1);
  const size = Math.ceil(events.length / groups);
  const chunks: Buffer[] = [];
  for (let i = 0; i < events.length; i += size) chunks.push(Buffer.concat(events.slice(i, i + size)));
  return [...chunks, terminal];
}

export interface StreamProfile {
  /** Writes per response (the terminal event is the last). */
  chunks: number;
  /** Milliseconds between writes: a response lasts about chunks × delayMs. */
  delayMs: number;
}

/** The fake upstream's answer to each request, by the kind in its body. */
export function soakReplier(profile: () => StreamProfile): (request: ReceivedRequest) => Reply {
  const cache = new Map<number, Buffer[]>();
  return (request) => {
    const { chunks: count, delayMs } = profile();
    let chunks = cache.get(count);
    if (chunks === undefined) cache.set(count, (chunks = chunked(count)));
    const kind = (JSON.parse(request.body.toString()) as { metadata?: { soak?: Kind } }).metadata?.soak;
    const last = chunks.length - 1;
    switch (kind) {
      case 'cancel':
      case 'long':
        // Silent before the terminal event until the gateway gives up on it.
        return { headers: SSE_HEADERS, chunks, delayMs, stallAfterChunks: Math.min(2, last) };
      case 'reset':
        return { headers: SSE_HEADERS, chunks, delayMs, resetAfterChunks: Math.max(1, Math.floor(last / 2)) };
      default:
        return { headers: SSE_HEADERS, chunks, delayMs };
    }
  };
}

export interface Account {
  id: string;
  key: string;
}

export function accounts(prefix: string, count: number): Account[] {
  return Array.from({ length: count }, (_, i) => ({ id: `${prefix}-${i}`, key: `tg-${prefix}-${i}` }));
}

/** `--account ID:KEY:CREDITS` for each account. */
export function accountArgs(list: Account[], credits: number): string[] {
  return list.flatMap(({ id, key }) => ['--account', `${id}:${key}:${credits}`]);
}

export type Result =
  /** 200, every byte of STREAM, exactly. */
  | 'completed'
  /** 200, and the client left after its first bytes (as asked). */
  | 'cancelled'
  /** 200, then the response was cut before its end. */
  | 'cut'
  /** 503 from the gateway (ledger unavailable), with its Retry-After. */
  | 'rejected'
  /** Anything else: another status, a connection error, a 200 whose bytes differ. */
  | 'error';

export interface Sent {
  kind: Kind;
  account: string;
  status: number;
  result: Result;
  retryAfter?: string;
  error?: string;
  startedAt: number;
  endedAt: number;
}

/** Streams with response headers received and not ended, now and at the most. */
export const streaming = { now: 0, max: 0 };

export interface SendOptions {
  /** Gives up (destroys the connection) after this long; the result is 'error'. */
  timeoutMs?: number;
  /** Called when the first body bytes arrive. */
  onFirstBytes?: () => void;
}

/** One request on a connection of its own; resolves when the exchange is over, never rejects. */
export function send(gateway: string, account: Account, kind: Kind, options: SendOptions = {}): Promise<Sent> {
  const body = requestBody(kind);
  const startedAt = Date.now();
  return new Promise((resolve) => {
    let done = false;
    let counted = false;
    let status = 0;
    let retryAfter: string | undefined;
    const finish = (result: Result, error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (counted) streaming.now--;
      resolve({ kind, account: account.id, status, result, retryAfter, error, startedAt, endedAt: Date.now() });
    };
    const req = http.request(`${gateway}/v1/responses`, {
      method: 'POST',
      agent: false,
      headers: { authorization: `Bearer ${account.key}`, 'content-type': 'application/json', 'content-length': body.length },
    });
    const timer = setTimeout(() => {
      finish('error', `no end after ${options.timeoutMs} ms`);
      req.destroy();
    }, options.timeoutMs ?? 60_000);
    req.on('error', (error) => finish(status === 200 ? 'cut' : 'error', (error as NodeJS.ErrnoException).code ?? error.message));
    req.on('response', (res) => {
      status = res.statusCode ?? 0;
      retryAfter = res.headers['retry-after'];
      if (status !== 200) {
        res.resume();
        res.on('end', () => finish(status === 503 && retryAfter !== undefined ? 'rejected' : 'error', `HTTP ${status}`));
        res.on('error', () => finish('error', `HTTP ${status}, then the connection broke`));
        return;
      }
      counted = true;
      streaming.now++;
      streaming.max = Math.max(streaming.max, streaming.now);
      let offset = 0;
      let exact = true;
      res.on('data', (chunk: Buffer) => {
        if (offset === 0) options.onFirstBytes?.();
        if (exact && (offset + chunk.length > STREAM.length || !chunk.equals(STREAM.subarray(offset, offset + chunk.length)))) exact = false;
        offset += chunk.length;
        if (kind === 'cancel') {
          finish('cancelled');
          req.destroy();
        }
      });
      res.on('end', () => finish(exact && offset === STREAM.length ? 'completed' : 'error', exact ? `ended after ${offset} bytes` : 'bytes differ from the upstream'));
      res.on('aborted', () => finish('cut'));
      res.on('error', () => finish('cut'));
      res.on('close', () => {
        if (!res.complete) finish('cut');
      });
    });
    req.end(body);
  });
}

/** The result each kind must come to when the gateway works. */
const EXPECTED_RESULT: Record<Kind, Result> = { completed: 'completed', cancel: 'cancelled', reset: 'cut', long: 'cut' };

/**
 * What the clients saw, and from it what the ledger must show: a request that got its expected
 * result is charged expectedCharge(kind); a 503 holds nothing; anything else is unexpected (its
 * charge cannot be worked out, and the balance check will say so).
 */
export class Book {
  readonly sent: Sent[] = [];
  private readonly charges = new Map<string, number[]>();

  record(sent: Sent): void {
    this.sent.push(sent);
    const list = this.charges.get(sent.account) ?? [];
    this.charges.set(sent.account, list);
    if (sent.result === EXPECTED_RESULT[sent.kind]) list.push(expectedCharge(sent.kind));
  }

  count(filter: (sent: Sent) => boolean = () => true): number {
    return this.sent.reduce((n, sent) => n + (filter(sent) ? 1 : 0), 0);
  }

  /** Requests that did not come to their kind's expected result (503s aside). */
  unexpected(): Sent[] {
    return this.sent.filter((sent) => sent.result !== 'rejected' && sent.result !== EXPECTED_RESULT[sent.kind]);
  }

  /** Requests the gateway admitted (a reservation was made): everything that got a 200. */
  admitted(): number {
    return this.count((sent) => sent.status === 200);
  }

  expectations(all: Account[]): Expectation[] {
    return all.map(({ id }) => ({ account: id, charges: this.charges.get(id) ?? [] }));
  }
}

/**
 * Kind of the n-th request: `cancelPct` % cancels and `resetPct` % resets, spread evenly
 * (37 is prime to 100, so n × 37 mod 100 walks every residue once per 100 requests).
 */
export function kindOf(n: number, cancelPct: number, resetPct: number): Kind {
  const r = (n * 37) % 100;
  if (r < cancelPct) return 'cancel';
  if (r < cancelPct + resetPct) return 'reset';
  return 'completed';
}

export interface ClosedLoop {
  /** Resolves when every client has finished its last request. */
  done: Promise<void>;
  stop(): void;
  /** Requests finished so far. */
  finished(): number;
}

/**
 * `concurrency` clients, each sending its next request as soon as the last one ended (after
 * `pauseMs`, or `rejectedPauseMs` after a 503), until stop().
 */
export function closedLoop(options: {
  gateway: string;
  accounts: Account[];
  concurrency: number;
  book: Book;
  kind: (n: number) => Kind;
  pauseMs?: number;
  rejectedPauseMs?: number;
}): ClosedLoop {
  let stopped = false;
  let n = 0;
  let finished = 0;
  const client = async () => {
    while (!stopped) {
      const i = n++;
      const sent = await send(options.gateway, options.accounts[i % options.accounts.length]!, options.kind(i), { timeoutMs: 30_000 });
      options.book.record(sent);
      finished++;
      const pause = sent.result === 'rejected' || sent.result === 'error' ? (options.rejectedPauseMs ?? 100) : (options.pauseMs ?? 0);
      if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
    }
  };
  const done = Promise.all(Array.from({ length: options.concurrency }, client)).then(() => undefined);
  return { done, stop: () => (stopped = true), finished: () => finished };
}
