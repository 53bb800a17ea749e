import type { LedgerOptions } from './types.js';
import { invalidArgument } from './errors.js';
import { openPgliteLedger } from './pglite.js';
import { openPostgresLedger } from './postgres.js';
import type { SqlLedger } from './sql-ledger.js';

export type * from './types.js';
export { LedgerError, type LedgerErrorCode } from './errors.js';
export { generateKey, hashKey, KEY_PREFIX } from './keys.js';
export { CREDIT_DECIMALS, creditsToMicros, isMicros, MICROS_PER_CREDIT, microsToCredits } from './money.js';
export { openPgliteLedger } from './pglite.js';
export { openPostgresLedger } from './postgres.js';
export { type AuditFinding, SqlLedger } from './sql-ledger.js';

/**
 * Opens a ledger and brings its schema up to date. `url`: `postgres://…` or `postgresql://…` for
 * PostgreSQL (a pool of 10 connections); anything else is an embedded PGlite ledger — a data
 * directory, `file://DIRECTORY`, or `memory://` for one that lasts as long as the process.
 * `options`: see LedgerOptions. Both are a SqlLedger: a Ledger, plus reserveStats() and audit().
 */
export async function openLedger(url: string, options: LedgerOptions = {}): Promise<SqlLedger> {
  if (typeof url !== 'string' || url.trim() === '') {
    throw invalidArgument('url', url, 'a postgres:// URL, a PGlite data directory or memory://');
  }
  return /^postgres(ql)?:\/\//i.test(url) ? openPostgresLedger(url, options) : openPgliteLedger(url, options);
}
