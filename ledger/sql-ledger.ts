/**
 * The ledger's logic, over a driver (driver.ts). The PostgreSQL and the PGlite ledger are this
 * class with a different driver: same statements (sql.ts), same migrations, same behaviour.
 */
import type { Driver, Session } from './driver.js';
import { LedgerError } from './errors.js';
import { generateKey, hashKey } from './keys.js';
import { groupCommit, type Submit } from './group-commit.js';
import { type LockedReservation, type ReservationState, SettlementWrites, type Standing } from './settlement.js';
import * as sql from './sql.js';
import type {
  AccountBalance,
  EntryKind,
  KeyReserveRequest,
  KeyReserveResult,
  Ledger,
  LedgerOptions,
  OverrunPolicy,
  ReserveRequest,
  ReserveResult,
  ReserveStats,
  SettlementOutcome,
  SettlementRequest,
  StatementLine,
} from './types.js';
import * as validate from './validate.js';

/** BIGINT (and count) as the drivers return it: pg gives a string, PGlite a number. */
type BigintColumn = string | number;

/** An account whose denormalised columns disagree with the journal or the open reservations. */
export interface AuditFinding {
  accountId: string;
  balance: number;
  /** Sum of the account's journal entries. */
  entriesTotal: number;
  held: number;
  /** Sum of the account's open reservations. */
  openTotal: number;
}

interface ReservationRow {
  id: string;
  account_id: string;
  amount: BigintColumn;
  state: ReservationState;
}

/** `available` is NULL for an unknown account (RESERVE_GROUP). */
type ReserveRow = { expires_at: Date | null; available: BigintColumn | null };
/** `account_id` is NULL for an unknown or revoked key (RESERVE_GROUP_FOR_KEYS). */
type KeyReserveRow = ReserveRow & { account_id: string | null };

/** What one reserve of a group came to: a result, or the error that reserve alone failed with. */
type Settled<R> = PromiseSettledResult<R>;

export class SqlLedger implements Ledger {
  /**
   * Group commit (group-commit.ts) of reserves, by account and by key; undefined when it is off
   * (maxReserveBatch 1). One group of each in flight at a time, so reserves are admitted in
   * arrival order.
   */
  private readonly reserveGroup: Submit<ReserveRequest, Settled<ReserveResult>> | undefined;
  private readonly keyReserveGroup: Submit<KeyReserveRequest, Settled<KeyReserveResult>> | undefined;
  private readonly stats: ReserveStats = { requests: 0, admitted: 0, refused: 0, statements: 0, largestGroup: 0 };

  constructor(
    private readonly driver: Driver,
    options: LedgerOptions = {},
  ) {
    const { maxReserveBatch: maxGroup } = validate.ledgerOptions(options);
    if (maxGroup > 1) {
      const options = { maxGroup, maxInFlight: 1 };
      this.reserveGroup = groupCommit((requests) => inOneStatement(requests, (group) => this.reserveMany(group), (one) => this.reserveOne(one)), options);
      this.keyReserveGroup = groupCommit(
        (requests) => inOneStatement(requests, (group) => this.reserveManyForKeys(group), (one) => this.reserveOneForKey(one)),
        options,
      );
    }
  }

  async reserve(request: ReserveRequest): Promise<ReserveResult> {
    validate.reserveRequest(request);
    return this.tallied(await submit(this.reserveGroup, request, (one) => this.reserveOne(one)));
  }

  async reserveForKey(request: KeyReserveRequest): Promise<KeyReserveResult> {
    validate.keyReserveRequest(request);
    return this.tallied(await submit(this.keyReserveGroup, request, (one) => this.reserveOneForKey(one)));
  }

  private tallied<R extends ReserveResult | KeyReserveResult>(result: R): R {
    this.stats.requests++;
    if (result.ok) this.stats.admitted++;
    else if (result.reason === 'insufficient_credits') this.stats.refused++;
    return result;
  }

  /** This instance's reserve counters (a copy). */
  reserveStats(): ReserveStats {
    return { ...this.stats };
  }

  /** One request, one statement: RESERVE. */
  private async reserveOne(request: ReserveRequest): Promise<ReserveResult> {
    const { reservationId, accountId, amount, ttlSeconds, provider, model, pricingVersion } = request;
    this.statementRan(1);
    const [row] = await this.driver.query<ReserveRow>(sql.RESERVE, [
      reservationId, accountId, amount, ttlSeconds, provider, model, pricingVersion,
    ]);
    if (row === undefined) return { ok: false, reason: 'unknown_account', available: 0 };
    const result = reserveResult(row);
    if (result.ok || result.available < amount) return result;
    // Refused, yet "available" (read at the statement's start) covers the amount: a concurrent
    // reserve took the credits before this one got the row lock, and the refusal was decided on
    // that newer row. Decide again under the lock, which reads the newest row: a refusal then
    // always says what was left when it was decided (and a release meanwhile admits it).
    return (await this.reserveMany([request]))[0]!;
  }

  /** Several requests, of any accounts, in one statement: RESERVE_GROUP. Throws for them all. */
  private async reserveMany(requests: ReserveRequest[]): Promise<ReserveResult[]> {
    this.statementRan(requests.length);
    const rows = await this.driver.query<ReserveRow>(sql.RESERVE_GROUP, reserveColumns(requests, (request) => request.accountId));
    return rows.map(reserveResult);
  }

  /** reserveMany() for gateway keys: RESERVE_GROUP_FOR_KEYS. */
  private async reserveManyForKeys(requests: KeyReserveRequest[]): Promise<KeyReserveResult[]> {
    this.statementRan(requests.length);
    const rows = await this.driver.query<KeyReserveRow>(sql.RESERVE_GROUP_FOR_KEYS, reserveColumns(requests, (request) => hashKey(request.apiKey)));
    return rows.map(keyReserveResult);
  }

  private async reserveOneForKey(request: KeyReserveRequest): Promise<KeyReserveResult> {
    return (await this.reserveManyForKeys([request]))[0]!;
  }

  private statementRan(groupSize: number): void {
    this.stats.statements++;
    this.stats.largestGroup = Math.max(this.stats.largestGroup, groupSize);
  }

  async settle(requests: SettlementRequest[], policy: OverrunPolicy): Promise<SettlementOutcome[]> {
    validate.policy(policy);
    requests.forEach(validate.settlementRequest);
    if (requests.length === 0) return [];
    return this.driver.transaction(async (tx) => {
      const ids = [...new Set(requests.map((request) => request.reservationId))];
      const rows = await tx.query<ReservationRow>(sql.LOCK_RESERVATIONS, [ids]);
      const locked = new Map(rows.map((row) => [row.id, toReservation(row)]));
      const writes = new SettlementWrites(await lockAccounts(tx, rows));
      const outcomes = requests.map((request): SettlementOutcome => {
        const reservation = locked.get(request.reservationId);
        if (reservation === undefined) return unchanged(request, 'unknown_reservation', 0);
        if (reservation.accountId !== request.accountId) return unchanged(request, 'account_mismatch', reservation.amount);
        // Closed by a span already: in an earlier delivery, or earlier in this batch.
        if (reservation.state === 'settled' || reservation.state === 'corrected') {
          return unchanged(request, 'duplicate', reservation.amount);
        }
        return writes.settle(reservation, request, policy);
      });
      await writes.apply(tx);
      return outcomes;
    });
  }

  async expireStale(now: Date, limit: number): Promise<number> {
    validate.date('expireStale: now', now);
    validate.positiveInteger('expireStale: limit', limit);
    return this.driver.transaction(async (tx) => {
      const rows = await tx.query<ReservationRow>(sql.LOCK_EXPIRED_RESERVATIONS, [now.toISOString(), limit]);
      const writes = new SettlementWrites(await lockAccounts(tx, rows));
      for (const row of rows) writes.expire(toReservation(row));
      await writes.apply(tx);
      return rows.length;
    });
  }

  async openReservations(): Promise<number> {
    const [row] = await this.driver.query<{ open: BigintColumn }>(sql.COUNT_OPEN_RESERVATIONS);
    return integer(row!.open);
  }

  async authenticate(key: string): Promise<string | null> {
    validate.key('authenticate: key', key);
    const [row] = await this.driver.query<{ account_id: string }>(sql.AUTHENTICATE, [hashKey(key)]);
    return row?.account_id ?? null;
  }

  async createAccount(accountId: string, amount: number): Promise<void> {
    validate.id('createAccount: accountId', accountId);
    validate.micros('createAccount: amount', amount, 0);
    const [row] = await this.driver.query<{ created: boolean }>(sql.CREATE_ACCOUNT, [accountId, amount]);
    if (!row!.created) throw new LedgerError('ERR_LEDGER_ACCOUNT_EXISTS', `account ${JSON.stringify(accountId)} already exists`);
  }

  async topUp(accountId: string, amount: number): Promise<void> {
    validate.id('topUp: accountId', accountId);
    validate.micros('topUp: amount', amount, 1);
    const rows = await this.driver.query(sql.TOP_UP, [accountId, amount]);
    if (rows.length > 0) return;
    const account = await this.account(accountId);
    if (account === null) throw unknownAccount(accountId);
    throw new LedgerError(
      'ERR_LEDGER_BALANCE_RANGE',
      `topping up ${accountId} by ${amount} micro-credits would take its balance (${account.balance}) past ${Number.MAX_SAFE_INTEGER}`,
    );
  }

  async account(accountId: string): Promise<AccountBalance | null> {
    validate.id('account: accountId', accountId);
    const [row] = await this.driver.query<{ balance: BigintColumn; held: BigintColumn }>(sql.ACCOUNT, [accountId]);
    if (row === undefined) return null;
    const balance = integer(row.balance);
    const held = integer(row.held);
    return { accountId, balance, held, available: balance - held };
  }

  async createKey(accountId: string): Promise<string> {
    const key = generateKey();
    await this.addKey(accountId, key);
    return key;
  }

  async addKey(accountId: string, key: string): Promise<void> {
    validate.id('addKey: accountId', accountId);
    validate.key('addKey: key', key);
    const [row] = await this.driver.query<{ account_exists: boolean; added: boolean }>(sql.ADD_KEY, [hashKey(key), accountId]);
    if (!row!.account_exists) throw unknownAccount(accountId);
    if (!row!.added) throw new LedgerError('ERR_LEDGER_KEY_EXISTS', 'this key is already registered (possibly revoked)');
  }

  async revokeKey(key: string): Promise<boolean> {
    validate.key('revokeKey: key', key);
    const rows = await this.driver.query(sql.REVOKE_KEY, [hashKey(key)]);
    return rows.length > 0;
  }

  async statement(accountId: string): Promise<StatementLine[]> {
    validate.id('statement: accountId', accountId);
    const rows = await this.driver.query<{
      id: BigintColumn;
      kind: EntryKind;
      amount: BigintColumn;
      overrun: BigintColumn;
      reservation_id: string | null;
      outcome: StatementLine['outcome'];
      created_at: Date;
      reserved: BigintColumn | null;
      charged: BigintColumn | null;
      released: BigintColumn | null;
      usage: Record<string, number> | null;
    }>(sql.STATEMENT, [accountId]);
    return rows.map((row) => ({
      id: integer(row.id),
      accountId,
      kind: row.kind,
      amount: integer(row.amount),
      overrun: integer(row.overrun),
      reservationId: row.reservation_id,
      createdAt: row.created_at,
      outcome: row.outcome,
      usage: row.usage,
      reserved: nullableInteger(row.reserved),
      charged: nullableInteger(row.charged),
      released: nullableInteger(row.released),
    }));
  }

  /**
   * Reconciliation: the accounts whose balance differs from the sum of their entries or whose
   * held differs from the sum of their open reservations. Empty on a consistent ledger.
   */
  async audit(): Promise<AuditFinding[]> {
    const rows = await this.driver.query<{
      id: string;
      balance: BigintColumn;
      held: BigintColumn;
      entries_total: BigintColumn;
      open_total: BigintColumn;
    }>(sql.AUDIT);
    return rows.map((row) => ({
      accountId: row.id,
      balance: integer(row.balance),
      entriesTotal: integer(row.entries_total),
      held: integer(row.held),
      openTotal: integer(row.open_total),
    }));
  }

  close(): Promise<void> {
    return this.driver.close();
  }
}

function reserveResult(row: ReserveRow): ReserveResult {
  if (row.expires_at !== null) return { ok: true, expiresAt: row.expires_at };
  if (row.available === null) return { ok: false, reason: 'unknown_account', available: 0 };
  return { ok: false, reason: 'insufficient_credits', available: integer(row.available) };
}

function keyReserveResult(row: KeyReserveRow): KeyReserveResult {
  if (row.account_id === null) return { ok: false, reason: 'unknown_key' };
  if (row.expires_at !== null) return { ok: true, accountId: row.account_id, expiresAt: row.expires_at };
  return { ok: false, reason: 'insufficient_credits', accountId: row.account_id, available: integer(row.available!) };
}

/** A group's requests as the statement's parameters, one array per column; `owner` is $2. */
function reserveColumns<T extends Omit<ReserveRequest, 'accountId'>>(requests: T[], owner: (request: T) => string): unknown[] {
  return [
    requests.map((request) => request.reservationId),
    requests.map(owner),
    requests.map((request) => request.amount),
    requests.map((request) => request.ttlSeconds),
    requests.map((request) => request.provider),
    requests.map((request) => request.model),
    requests.map((request) => request.pricingVersion),
  ];
}

/**
 * The reserves that waited together (group-commit.ts), in arrival order, in one statement; one
 * alone in the statement for one. A reused reservation id (a caller's mistake) fails the whole
 * statement, which held nothing: then each request alone, in the same order, so that only the
 * reused id fails, as it would have without group commit.
 */
async function inOneStatement<T, R>(
  requests: T[],
  many: (requests: T[]) => Promise<R[]>,
  one: (request: T) => Promise<R>,
): Promise<Array<Settled<R>>> {
  if (requests.length === 1) return [await settle(one(requests[0]!))];
  try {
    return (await many(requests)).map((value) => ({ status: 'fulfilled', value }));
  } catch (error) {
    if (!isUniqueViolation(error)) throw error;
    const settled: Array<Settled<R>> = [];
    for (const request of requests) settled.push(await settle(one(request)));
    return settled;
  }
}

/** Through the group commit when there is one, else alone. */
async function submit<T, R>(group: Submit<T, Settled<R>> | undefined, request: T, alone: (request: T) => Promise<R>): Promise<R> {
  if (group === undefined) return alone(request);
  const [settled] = await group([request]);
  if (settled!.status === 'rejected') throw settled!.reason;
  return settled!.value;
}

function settle<R>(promise: Promise<R>): Promise<Settled<R>> {
  return promise.then(
    (value) => ({ status: 'fulfilled', value }),
    (reason: unknown) => ({ status: 'rejected', reason }),
  );
}

/** SQLSTATE unique_violation, as both drivers report it. */
function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}

function toReservation(row: ReservationRow): LockedReservation {
  return { id: row.id, accountId: row.account_id, amount: integer(row.amount), state: row.state };
}

/** A settlement request that changed nothing. */
function unchanged(
  request: SettlementRequest,
  result: 'duplicate' | 'unknown_reservation' | 'account_mismatch',
  reserved: number,
): SettlementOutcome {
  return { reservationId: request.reservationId, result, reserved, charged: 0, released: 0, overrun: 0 };
}

function unknownAccount(accountId: string): LedgerError {
  return new LedgerError('ERR_LEDGER_UNKNOWN_ACCOUNT', `account ${JSON.stringify(accountId)} does not exist`);
}

/** Locks the accounts of these reservations, in id order, and reads where they stand. */
async function lockAccounts(tx: Session, reservations: ReservationRow[]): Promise<Map<string, Standing>> {
  if (reservations.length === 0) return new Map();
  const ids = [...new Set(reservations.map((row) => row.account_id))];
  const rows = await tx.query<{ id: string; balance: BigintColumn; held: BigintColumn }>(sql.LOCK_ACCOUNTS, [ids]);
  return new Map(rows.map((row) => [row.id, { balance: integer(row.balance), held: integer(row.held) }]));
}

/** A BIGINT column as a JS number; one beyond 2^53 cannot be money this ledger wrote. */
function integer(value: BigintColumn): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number)) throw new Error(`ledger value ${value} is not a safe integer`);
  return number;
}

function nullableInteger(value: BigintColumn | null): number | null {
  return value === null ? null : integer(value);
}
