/**
 * The errors a ledger throws for a caller's mistake. Database failures (connection lost, …) are
 * passed through as the driver reports them: the gateway answers those with "retry later".
 */

export type LedgerErrorCode =
  /** An argument has the wrong type or range; the message names the option and the value. */
  | 'ERR_LEDGER_INVALID_ARGUMENT'
  | 'ERR_LEDGER_UNKNOWN_ACCOUNT'
  | 'ERR_LEDGER_ACCOUNT_EXISTS'
  | 'ERR_LEDGER_KEY_EXISTS'
  /** A top-up would take a balance past 2^53 - 1 micro-credits, the most every reader takes exactly. */
  | 'ERR_LEDGER_BALANCE_RANGE'
  /** An embedded ledger's data directory is open in another process. */
  | 'ERR_LEDGER_IN_USE';

export class LedgerError extends Error {
  constructor(
    readonly code: LedgerErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LedgerError';
  }
}

export function invalidArgument(option: string, value: unknown, expected: string): LedgerError {
  return new LedgerError('ERR_LEDGER_INVALID_ARGUMENT', `${option} must be ${expected}, got ${describe(value)}`);
}

function describe(value: unknown): string {
  if (value instanceof Date) return `Date(${value.getTime()})`;
  if (typeof value === 'bigint') return `${value}n`;
  // JSON.stringify returns undefined for undefined and functions.
  return JSON.stringify(value) ?? String(value);
}
