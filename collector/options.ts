/**
 * The settlement processor's options, validated once at construction: a bad value fails fast
 * with an error that names the option and the value, never on the first request.
 */
import { Registry } from 'prom-client';
import type { Ledger, OverrunPolicy } from '../ledger/types.js';
import type { PricingTable } from '../plugin/pricing.js';
import { OptionError, positiveIntegerOption } from '../plugin/option-error.js';
import { checkSigningKey, type SigningKey } from '../plugin/signing.js';
import { pricingCatalogue, type PricingCatalogue, type SigningKeys } from './records.js';

export interface SettlementServerOptions {
  /** The ledger reservations are settled in. Required. */
  ledger: Ledger;
  /**
   * Every pricing table the gateways may reserve with (each `--pricing` file and the built-in
   * default, as the case may be). Required, at least one. Spans name theirs by version.
   */
  pricing: PricingTable[];
  /**
   * 'bearer' (default): a request must carry `Authorization: Bearer <one of tokens>`.
   * 'none': no authentication, for the embedded single-process default, whose endpoint listens
   * on loopback only; never expose such an endpoint.
   */
  auth?: 'bearer' | 'none';
  /** Accepted bearer tokens; several at once allow rotation. Required (non-empty) with auth 'bearer'. */
  tokens?: string[];
  /**
   * Keys the gateways sign billing spans with (plugin/signing.ts). When given, a billing span
   * that is unsigned, altered, or signed with another key is rejected (invalid_signature). Give
   * two during a rotation. Default: none — spans are not required to be signed.
   */
  signingKeys?: SigningKey[];
  /** What a cost above the reservation does: 'cap' (default) charges the reserved amount, 'charge' all of it. */
  overrunPolicy?: OverrunPolicy;
  /** Largest request body in bytes, compressed and after decompression. Default 20 MiB (the OTLP spec's advice). */
  maxBodyBytes?: number;
  /**
   * Requests arriving while settlement transactions run are settled together in the next one,
   * up to this many spans (one larger request still goes whole): it bounds how long a
   * transaction holds its locks. Default 2,048.
   */
  maxBatchSpans?: number;
  /** Seconds the Retry-After of a 503 asks the sender to wait when the ledger fails. Default 5. */
  retryAfterSeconds?: number;
  /** Registry of the settlement metrics, served on GET /metrics. Default: a new Registry. */
  registry?: Registry;
  /** Told about the failures the processor recovers from (the ledger failing). Default: console.error. */
  onError?: (error: unknown) => void;
}

export interface SweeperOptions {
  ledger: Ledger;
  /** Milliseconds between sweeps. Default 10,000. */
  intervalMs?: number;
  /** Reservations expired per ledger transaction; a sweep repeats until fewer remain. Default 1,000. */
  batchLimit?: number;
  /** The clock stale reservations are judged by. Default: () => new Date(). */
  now?: () => Date;
  /** Registry of the settlement metrics (the server's, to share them). Default: a new Registry. */
  registry?: Registry;
  /** Told about failed sweeps (the next one retries). Default: console.error. */
  onError?: (error: unknown) => void;
}

export interface ResolvedServerOptions {
  ledger: Ledger;
  catalogue: PricingCatalogue;
  signingKeys: SigningKeys;
  /** Empty with auth 'none'. */
  tokens: string[];
  overrunPolicy: OverrunPolicy;
  maxBodyBytes: number;
  maxBatchSpans: number;
  retryAfterSeconds: number;
  registry: Registry;
  onError: (error: unknown) => void;
}

export interface ResolvedSweeperOptions {
  ledger: Ledger;
  intervalMs: number;
  batchLimit: number;
  now: () => Date;
  registry: Registry;
  onError: (error: unknown) => void;
}

export class SettlementOptionError extends OptionError {
  readonly code = 'ERR_TOLLGATE_SETTLEMENT_OPTION';
  constructor(option: string, value: unknown, expected: string) {
    super('tollgate settlement', option, value, expected);
    this.name = 'SettlementOptionError';
  }
}

export function parseServerOptions(options: SettlementServerOptions): ResolvedServerOptions {
  const auth = options.auth ?? 'bearer';
  if (auth !== 'bearer' && auth !== 'none') throw new SettlementOptionError('auth', auth, "'bearer' or 'none'");
  const tokens = options.tokens ?? [];
  // A bearer header carries no whitespace in its token: such a token would refuse its sender forever.
  if (!Array.isArray(tokens) || tokens.some((token) => typeof token !== 'string' || !/^\S+$/.test(token))) {
    throw new SettlementOptionError('tokens', tokens, 'an array of non-empty strings without whitespace');
  }
  if (auth === 'bearer' && tokens.length === 0) {
    throw new SettlementOptionError('tokens', tokens, "at least one token (or auth: 'none', on loopback only)");
  }
  if (auth === 'none' && tokens.length > 0) {
    throw new SettlementOptionError('tokens', tokens, "empty with auth 'none'");
  }
  const policy = options.overrunPolicy ?? 'cap';
  if (policy !== 'cap' && policy !== 'charge') {
    throw new SettlementOptionError('overrunPolicy', policy, "'cap' or 'charge'");
  }
  if (!Array.isArray(options.pricing) || options.pricing.length === 0) {
    throw new SettlementOptionError('pricing', options.pricing, 'a non-empty array of pricing tables');
  }
  return {
    ledger: ledger(options.ledger),
    catalogue: pricingCatalogue(options.pricing),
    signingKeys: signingKeys(options.signingKeys),
    tokens,
    overrunPolicy: policy,
    maxBodyBytes: positiveInteger('maxBodyBytes', options.maxBodyBytes, 20 * 1024 * 1024),
    maxBatchSpans: positiveInteger('maxBatchSpans', options.maxBatchSpans, 2_048),
    retryAfterSeconds: positiveInteger('retryAfterSeconds', options.retryAfterSeconds, 5),
    registry: options.registry ?? new Registry(),
    onError: errorHandler(options.onError),
  };
}

export function parseSweeperOptions(options: SweeperOptions): ResolvedSweeperOptions {
  if (options.now !== undefined && typeof options.now !== 'function') {
    throw new SettlementOptionError('now', options.now, 'a function returning a Date');
  }
  return {
    ledger: ledger(options.ledger),
    intervalMs: positiveInteger('intervalMs', options.intervalMs, 10_000),
    batchLimit: positiveInteger('batchLimit', options.batchLimit, 1_000),
    now: options.now ?? (() => new Date()),
    registry: options.registry ?? new Registry(),
    onError: errorHandler(options.onError),
  };
}

function ledger(value: Ledger | undefined): Ledger {
  if (typeof value?.settle !== 'function') throw new SettlementOptionError('ledger', value, 'a Ledger');
  return value;
}

function positiveInteger(name: string, value: unknown, fallback: number): number {
  return positiveIntegerOption(SettlementOptionError, name, value, fallback);
}

function signingKeys(keys: SigningKey[] | undefined): SigningKeys {
  if (keys === undefined) return new Map();
  if (!Array.isArray(keys)) throw new SettlementOptionError('signingKeys', keys, 'an array of {id, secret}');
  for (const key of keys) {
    try {
      checkSigningKey(key, 'signingKeys');
    } catch (error) {
      throw new SettlementOptionError('signingKeys', key?.id, `valid keys (${(error as Error).message})`);
    }
  }
  return new Map(keys.map((key) => [key.id, key.secret]));
}

function errorHandler(value: ((error: unknown) => void) | undefined): (error: unknown) => void {
  if (value !== undefined && typeof value !== 'function') throw new SettlementOptionError('onError', value, 'a function');
  return value ?? ((error) => console.error('tollgate settlement:', error));
}

