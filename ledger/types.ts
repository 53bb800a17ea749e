/**
 * The one Ledger interface. The embedded (PGlite) and the PostgreSQL ledger implement it with the
 * same schema, migrations and SQL, and pass one shared conformance suite (test/ledger/).
 *
 * Money is integer micro-credits (1 credit = 1,000,000 micro-credits) held in JS numbers that are
 * always safe integers, and in BIGINT columns.
 */
import type { Outcome } from '../plugin/semconv.js';

export interface ReserveRequest {
  /** Unique id chosen by the gateway (a UUID); it goes on the billing span. */
  reservationId: string;
  accountId: string;
  /** Micro-credits to hold; a positive safe integer. */
  amount: number;
  /** After this long without a settling span, the sweeper settles the reservation at its amount. */
  ttlSeconds: number;
  provider: string;
  model: string;
  pricingVersion: string;
}

export type ReserveResult =
  | { ok: true; expiresAt: Date }
  | { ok: false; reason: 'insufficient_credits' | 'unknown_account'; available: number };

/** A reserve for whichever account a gateway key belongs to. */
export interface KeyReserveRequest extends Omit<ReserveRequest, 'accountId'> {
  /** The key the client sent; it is looked up in the same statement that holds the credits. */
  apiKey: string;
}

export type KeyReserveResult =
  | { ok: true; accountId: string; expiresAt: Date }
  | { ok: false; reason: 'insufficient_credits'; accountId: string; available: number }
  | { ok: false; reason: 'unknown_key' };

export type OverrunPolicy = 'cap' | 'charge';

/** What a billing span asks the ledger to do with one reservation. */
export interface SettlementRequest {
  reservationId: string;
  /** The account the span names; a mismatch with the reservation's account is rejected. */
  accountId: string;
  outcome: Outcome;
  /**
   * Priced cost in micro-credits, or null when the usage is missing: then the reserved amount is
   * charged. 0 for a request the upstream never served (no 2xx, no usage).
   */
  cost: number | null;
  /** Usage as reported, kept in the journal for statements (JSON-serialisable). */
  usage: Record<string, number> | null;
  pricingVersion: string;
  /** When the span ended; settlement lag is measured from here. */
  spanEndTime: Date;
}

export type SettleResult =
  | 'settled' // first settlement of an open reservation
  | 'corrected' // a span for a reservation the sweeper had expired: corrected to the real cost
  | 'duplicate' // already settled from a span: nothing changed
  | 'unknown_reservation'
  | 'account_mismatch';

/**
 * One per request, in the order of the requests. For 'duplicate', 'unknown_reservation' and
 * 'account_mismatch' nothing changed: charged, released and overrun are 0 (and reserved is 0 for
 * an unknown reservation).
 */
export interface SettlementOutcome {
  reservationId: string;
  result: SettleResult;
  reserved: number;
  charged: number;
  released: number;
  /** Cost above the reserved amount (recorded under either policy; debited only under 'charge'). */
  overrun: number;
}

export interface AccountBalance {
  accountId: string;
  /** Sum of the account's journal entries. */
  balance: number;
  /** Sum of the account's open reservations. */
  held: number;
  /** balance - held. */
  available: number;
}

/**
 * Releasing the unused part of a reservation changes `held`, not the balance, so it is not an
 * entry: the statement shows it per reservation (StatementLine.released).
 */
export type EntryKind = 'topup' | 'charge' | 'overrun' | 'correction';

export interface JournalEntry {
  id: number;
  accountId: string;
  kind: EntryKind;
  /** Signed micro-credits: top-ups positive, charges negative. */
  amount: number;
  /**
   * On an 'overrun' entry, the cost above the reserved amount (its `amount` is -overrun under the
   * 'charge' policy, 0 under 'cap'); 0 on other entries.
   */
  overrun: number;
  reservationId: string | null;
  createdAt: Date;
}

export interface StatementLine extends JournalEntry {
  /** The outcome when the entry was written: 'expired' for the sweeper's charge; null for a top-up. */
  outcome: Outcome | 'expired' | null;
  /** The reservation's usage and how it ended (its latest figures); null on a top-up. */
  usage: Record<string, number> | null;
  reserved: number | null;
  charged: number | null;
  released: number | null;
}

/** How a SQL ledger (PostgreSQL or PGlite) runs; every field is optional. */
export interface LedgerOptions {
  /**
   * Group commit (ledger/group-commit.ts): the most reserves that one statement carries, when
   * several arrive in this process in one turn of the event loop or while the previous statement
   * is in flight. 1 turns group commit off: each is its own statement, reserves queued on the
   * account's row lock in the database. Default 256.
   */
  maxReserveBatch?: number;
}

/** Counters of this ledger instance's reserves (one process), since it was opened. */
export interface ReserveStats {
  /** reserve() and reserveForKey() calls that reached the database (valid requests). */
  requests: number;
  admitted: number;
  /** Refused for insufficient credits (unknown accounts and keys are not counted). */
  refused: number;
  /** Statements run for them: requests / statements is the mean group size. */
  statements: number;
  largestGroup: number;
}

export interface Ledger {
  /** Holds credits atomically: two concurrent reserves never both spend the same last credits. */
  reserve(request: ReserveRequest): Promise<ReserveResult>;
  /**
   * reserve() for the account of a gateway key (unknown and revoked keys: 'unknown_key'): the
   * gateway's one ledger call per request, key lookup and reserve in one statement.
   */
  reserveForKey(request: KeyReserveRequest): Promise<KeyReserveResult>;
  /** Applies a batch of settlements in one transaction; idempotent per reservation. */
  settle(requests: SettlementRequest[], policy: OverrunPolicy): Promise<SettlementOutcome[]>;
  /** Settles reservations open past their TTL at the reserved amount (outcome 'expired'). */
  expireStale(now: Date, limit: number): Promise<number>;
  openReservations(): Promise<number>;

  /** The account a gateway key belongs to, or null for an unknown or revoked key. */
  authenticate(key: string): Promise<string | null>;
  /** Creates an account with an opening top-up of `amount` micro-credits (0 allowed). */
  createAccount(accountId: string, amount: number): Promise<void>;
  topUp(accountId: string, amount: number): Promise<void>;
  account(accountId: string): Promise<AccountBalance | null>;
  /** Creates a key and returns it; only its hash is stored. */
  createKey(accountId: string): Promise<string>;
  /** Registers a key chosen by the operator (e.g. `--account ID:KEY:CREDITS`); only its hash is stored. */
  addKey(accountId: string, key: string): Promise<void>;
  revokeKey(key: string): Promise<boolean>;
  statement(accountId: string): Promise<StatementLine[]>;
  close(): Promise<void>;
}
