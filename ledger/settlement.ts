/**
 * The settlement rule, and the writes that settling or expiring a batch of reservations makes.
 *
 * The writes are gathered here as columns and applied with a constant number of array statements
 * (see sql.ts), so a batch of 1,000 spans costs about what a batch of 10 does in round trips.
 */
import type { Session } from './driver.js';
import * as sql from './sql.js';
import type { EntryKind, OverrunPolicy, SettlementOutcome, SettlementRequest, StatementLine } from './types.js';

export type ReservationState = 'open' | 'settled' | 'expired' | 'corrected';

/** A reservation row as read under its lock. */
export interface LockedReservation {
  id: string;
  accountId: string;
  amount: number;
  state: ReservationState;
}

/**
 * How a priced cost splits against the reserved amount. `charged` never exceeds the reserved
 * amount; what the cost goes above it is the `overrun`, which the policy decides about.
 */
export function splitCost(reserved: number, cost: number | null): { charged: number; released: number; overrun: number } {
  // Usage missing: the reservation was the gateway's upper bound for the request, charged in full.
  if (cost === null) return { charged: reserved, released: 0, overrun: 0 };
  const charged = Math.min(cost, reserved);
  return { charged, released: reserved - charged, overrun: cost - charged };
}

type Outcome = NonNullable<StatementLine['outcome']>;

/** An account's balance and held amount, as read when its row was locked. */
export interface Standing {
  balance: number;
  held: number;
}

/**
 * Every reader takes ledger amounts as safe integers: under the 'charge' policy an over-run is
 * debited only as far as the account's available amount can go and stay one (below −2^53 + 1),
 * whatever every hold still open is charged later; the rest is absorbed, as under 'cap'. Without
 * this a sender could push a balance past what can be read, or past BIGINT, which fails the
 * batch — every retry of it too.
 */
const FLOOR = -BigInt(Number.MAX_SAFE_INTEGER);

export class SettlementWrites {
  /** One element per closed reservation, in the column order of sql.CLOSE_RESERVATIONS. */
  private readonly closed = {
    id: [] as string[],
    state: [] as ReservationState[],
    outcome: [] as Outcome[],
    cost: [] as Array<number | null>,
    charged: [] as number[],
    released: [] as number[],
    overrun: [] as number[],
    usage: [] as Array<string | null>,
    pricingVersion: [] as Array<string | null>,
    spanEndTime: [] as Array<string | null>,
  };
  /** One element per journal entry, in the column order of sql.APPEND_ENTRIES. */
  private readonly entries = {
    accountId: [] as string[],
    kind: [] as EntryKind[],
    amount: [] as number[],
    overrun: [] as number[],
    reservationId: [] as string[],
    outcome: [] as Outcome[],
  };
  /**
   * Net change per account, exact: the changes of a batch may add up beyond 2^53 on the way to a
   * balance that is within it (an over-run debited, then the charges of the holds it left).
   */
  private readonly deltas = new Map<string, { balance: bigint; held: bigint }>();

  /** `accounts`: where the accounts of the reservations to close stand, locked (lockAccounts). */
  constructor(private readonly accounts: ReadonlyMap<string, Standing>) {}

  /**
   * Settles an open reservation from its span, or corrects one the sweeper expired. Marks
   * `reservation` closed, so that the same reservation again in this batch is a duplicate.
   */
  settle(reservation: LockedReservation, request: SettlementRequest, policy: OverrunPolicy): SettlementOutcome {
    const { charged, released, overrun } = splitCost(reservation.amount, request.cost);
    const { id, accountId, amount } = reservation;
    const open = reservation.state === 'open';
    // Open: charge and release the hold. Expired: the sweeper charged the whole amount and
    // released the hold; give back what the span says was not used, so the account ends where an
    // on-time settlement would have left it.
    const balanceChange = open ? -charged : amount - charged;
    const heldChange = open ? -amount : 0;
    const overrunDebit = policy === 'charge' ? Math.min(overrun, this.debitable(accountId, balanceChange - heldChange)) : 0;
    const result = open ? 'settled' : 'corrected';
    this.entry(accountId, open ? 'charge' : 'correction', balanceChange, 0, id, request.outcome);
    this.adjust(accountId, balanceChange - overrunDebit, heldChange);
    if (overrun > 0) this.entry(accountId, 'overrun', -overrunDebit, overrun, id, request.outcome);
    reservation.state = result;
    this.close(reservation, {
      outcome: request.outcome,
      cost: request.cost,
      charged,
      released,
      overrun,
      usage: request.usage === null ? null : JSON.stringify(request.usage),
      pricingVersion: request.pricingVersion,
      spanEndTime: request.spanEndTime.toISOString(),
    });
    return { reservationId: id, result, reserved: amount, charged, released, overrun };
  }

  /** Settles an open reservation at its full amount: no span came before its TTL. */
  expire(reservation: LockedReservation): void {
    const { id, accountId, amount } = reservation;
    this.entry(accountId, 'charge', -amount, 0, id, 'expired');
    this.adjust(accountId, -amount, -amount);
    reservation.state = 'expired';
    this.close(reservation, {
      outcome: 'expired',
      cost: null,
      charged: amount,
      released: 0,
      overrun: 0,
      usage: null,
      pricingVersion: null,
      spanEndTime: null,
    });
  }

  /** What an over-run may still debit: how far the account's available amount is above FLOOR. */
  private debitable(accountId: string, availableChange: number): number {
    const standing = this.accounts.get(accountId);
    if (standing === undefined) throw new Error(`account ${accountId} was not locked before settling`);
    const delta = this.deltas.get(accountId);
    const available =
      BigInt(standing.balance) - BigInt(standing.held) + (delta ? delta.balance - delta.held : 0n) + BigInt(availableChange);
    const room = available - FLOOR;
    return room <= 0n ? 0 : room >= BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(room);
  }

  /** Writes everything gathered; the accounts are locked already. */
  async apply(tx: Session): Promise<void> {
    if (this.closed.id.length === 0) return;
    const accounts = [...this.deltas.keys()];
    const c = this.closed;
    await tx.query(sql.CLOSE_RESERVATIONS, [
      c.id, c.state, c.outcome, c.cost, c.charged, c.released, c.overrun, c.usage, c.pricingVersion, c.spanEndTime,
    ]);
    const e = this.entries;
    await tx.query(sql.APPEND_ENTRIES, [e.accountId, e.kind, e.amount, e.overrun, e.reservationId, e.outcome]);
    const deltas = [...this.deltas.values()];
    await tx.query(sql.ADJUST_ACCOUNTS, [accounts, deltas.map((d) => String(d.balance)), deltas.map((d) => String(d.held))]);
  }

  private close(
    reservation: LockedReservation,
    ending: {
      outcome: Outcome;
      cost: number | null;
      charged: number;
      released: number;
      overrun: number;
      usage: string | null;
      pricingVersion: string | null;
      spanEndTime: string | null;
    },
  ): void {
    const c = this.closed;
    c.id.push(reservation.id);
    c.state.push(reservation.state);
    c.outcome.push(ending.outcome);
    c.cost.push(ending.cost);
    c.charged.push(ending.charged);
    c.released.push(ending.released);
    c.overrun.push(ending.overrun);
    c.usage.push(ending.usage);
    c.pricingVersion.push(ending.pricingVersion);
    c.spanEndTime.push(ending.spanEndTime);
  }

  private entry(accountId: string, kind: EntryKind, amount: number, overrun: number, reservationId: string, outcome: Outcome): void {
    const e = this.entries;
    e.accountId.push(accountId);
    e.kind.push(kind);
    e.amount.push(amount);
    e.overrun.push(overrun);
    e.reservationId.push(reservationId);
    e.outcome.push(outcome);
  }

  private adjust(accountId: string, balance: number, held: number): void {
    const delta = this.deltas.get(accountId);
    if (delta === undefined) {
      this.deltas.set(accountId, { balance: BigInt(balance), held: BigInt(held) });
    } else {
      delta.balance += BigInt(balance);
      delta.held += BigInt(held);
    }
  }
}
