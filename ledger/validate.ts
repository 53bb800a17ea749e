/**
 * Argument checks at the ledger's boundary. Money must arrive as safe integers: a float or an
 * unsafe integer would silently lose micro-credits on its way into a BIGINT.
 */
import { OUTCOMES } from '../plugin/semconv.js';
import { invalidArgument } from './errors.js';
import { isWellFormedKey } from './keys.js';
import { isMicros } from './money.js';
import type { KeyReserveRequest, LedgerOptions, OverrunPolicy, ReserveRequest, SettlementRequest } from './types.js';

/** Ids are opaque text; the bound keeps an accidental blob out of the primary keys. */
const MAX_ID_LENGTH = 256;

export function id(option: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH || value.includes('\u0000')) {
    throw invalidArgument(option, value, `a non-empty string of at most ${MAX_ID_LENGTH} characters, without NUL`);
  }
  return value;
}

export function text(option: string, value: unknown): string {
  // PostgreSQL text cannot hold a NUL: caught here, it fails this call alone, not the group
  // statement it would have joined.
  if (typeof value !== 'string' || value.includes('\u0000')) throw invalidArgument(option, value, 'a string without NUL characters');
  return value;
}

/** `min` 0: zero allowed; 1: positive. */
export function micros(option: string, value: unknown, min: 0 | 1): number {
  if (!isMicros(value) || value < min) {
    throw invalidArgument(option, value, `a ${min === 0 ? 'non-negative' : 'positive'} safe integer of micro-credits`);
  }
  return value;
}

export function date(option: string, value: unknown): Date {
  // Years past 9999 have no ISO 8601 form PostgreSQL reads (toISOString writes "+010000-…"): a
  // statement carrying one would fail for every request it holds.
  if (!(value instanceof Date) || Number.isNaN(value.getTime()) || value.getUTCFullYear() < 1 || value.getUTCFullYear() > 9999) {
    throw invalidArgument(option, value, 'a valid Date in the years 1 to 9999');
  }
  return value;
}

export function positiveInteger(option: string, value: unknown): number {
  if (!Number.isSafeInteger(value) || (value as number) < 1) throw invalidArgument(option, value, 'a positive integer');
  return value as number;
}

/** Group commit's default group size: see LedgerOptions.maxReserveBatch. */
const DEFAULT_MAX_RESERVE_BATCH = 256;
/** A larger group would hold the account's row lock for long; its arrays stay well below 1 MB. */
const MAX_RESERVE_BATCH = 10_000;

/** LedgerOptions with the defaults applied. */
export function ledgerOptions(options: LedgerOptions): Required<LedgerOptions> {
  if (options === null || typeof options !== 'object') throw invalidArgument('options', options, 'an object');
  const { maxReserveBatch = DEFAULT_MAX_RESERVE_BATCH } = options;
  if (!Number.isSafeInteger(maxReserveBatch) || maxReserveBatch < 1 || maxReserveBatch > MAX_RESERVE_BATCH) {
    throw invalidArgument('maxReserveBatch', maxReserveBatch, `a whole number from 1 to ${MAX_RESERVE_BATCH}`);
  }
  return { maxReserveBatch };
}

/** A key is a secret: the error describes it without quoting it. */
export function key(option: string, value: unknown): string {
  if (typeof value !== 'string' || !isWellFormedKey(value)) {
    const shown = typeof value === 'string' ? `a string of ${value.length} characters` : typeof value;
    throw invalidArgument(option, shown, 'a non-empty string without whitespace');
  }
  return value;
}

export function reserveRequest(request: ReserveRequest): void {
  id('reserve: accountId', request.accountId);
  reserveFields('reserve', request);
}

export function keyReserveRequest(request: KeyReserveRequest): void {
  key('reserveForKey: apiKey', request.apiKey);
  reserveFields('reserveForKey', request);
}

/**
 * A reservation holds credits for one request. A year and a day is far beyond any; the bound keeps
 * every expiry a timestamp both databases and the sweeper take (1e300 s failed the whole group
 * statement; 1e12 s held credits past the year 9999, where the sweeper cannot reach).
 */
export const MAX_TTL_SECONDS = 366 * 24 * 3600;

function reserveFields(method: string, request: Omit<ReserveRequest, 'accountId'>): void {
  id(`${method}: reservationId`, request.reservationId);
  micros(`${method}: amount`, request.amount, 1);
  const ttl = request.ttlSeconds;
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0 || ttl > MAX_TTL_SECONDS) {
    throw invalidArgument(`${method}: ttlSeconds`, ttl, `a positive number of seconds, at most ${MAX_TTL_SECONDS}`);
  }
  text(`${method}: provider`, request.provider);
  text(`${method}: model`, request.model);
  text(`${method}: pricingVersion`, request.pricingVersion);
}

export function policy(value: unknown): OverrunPolicy {
  if (value !== 'cap' && value !== 'charge') throw invalidArgument('settle: policy', value, "'cap' or 'charge'");
  return value;
}

export function settlementRequest(request: SettlementRequest, index: number): void {
  const option = (field: string) => `settle: requests[${index}].${field}`;
  id(option('reservationId'), request.reservationId);
  id(option('accountId'), request.accountId);
  if (!(OUTCOMES as readonly unknown[]).includes(request.outcome)) {
    throw invalidArgument(option('outcome'), request.outcome, `one of ${OUTCOMES.join(', ')}`);
  }
  if (request.cost !== null) micros(option('cost'), request.cost, 0);
  if (request.usage !== null && !isTokenCounts(request.usage)) {
    throw invalidArgument(option('usage'), request.usage, 'an object of token counts (names without NUL, non-negative safe integers) or null');
  }
  text(option('pricingVersion'), request.pricingVersion);
  date(option('spanEndTime'), request.spanEndTime);
}

/** Stored as JSON (jsonb cannot hold a NUL): the names are text and the counts whole numbers. */
function isTokenCounts(usage: unknown): boolean {
  if (typeof usage !== 'object' || usage === null || Array.isArray(usage)) return false;
  return Object.entries(usage).every(
    ([name, count]) => !name.includes('\u0000') && (count === undefined || (Number.isSafeInteger(count) && (count as number) >= 0)),
  );
}
