/**
 * Random sequences of reserve / settle (on time, duplicated, late, for unknown reservations or
 * the wrong account) / expire / top-up against both ledgers, checked after every step against a
 * model that does the arithmetic in plain integers.
 */
import { expect } from 'chai';
import fc from 'fast-check';
import type { SqlLedger } from '../../ledger/index.js';
import type { OverrunPolicy, SettlementOutcome, SettlementRequest } from '../../ledger/types.js';
import { reserveRequest, settlementRequest } from './conformance.js';
import { DATABASE_URL, type OpenTestLedger, pgliteLedgers, postgresLedgers } from './databases.js';

const ACCOUNTS = ['a', 'b', 'c'] as const;
const HOUR = 3_600_000;

/** How a settlement's cost relates to the reserved amount. */
type CostKind = 'missing' | 'zero' | 'below' | 'exact' | 'above';

type Step =
  | { kind: 'reserve'; account: number; amount: number; shortTtl: boolean }
  /** Reserves submitted at once, on accounts in any order: they go to the database as a group (group commit). */
  | { kind: 'burst'; items: Array<{ account: number; amount: number }>; shortTtl: boolean }
  | { kind: 'settle'; policy: OverrunPolicy; items: Array<{ pick: number; cost: CostKind; wrongAccount: boolean; unknown: boolean }> }
  | { kind: 'expire'; hours: 0 | 2 | 48 }
  | { kind: 'topUp'; account: number; amount: number };

const oneInTen = fc.nat(9).map((n) => n === 0);

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('reserve' as const), account: fc.nat(2), amount: fc.integer({ min: 1, max: 6_000_000 }), shortTtl: fc.boolean() }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('settle' as const),
      policy: fc.constantFrom<OverrunPolicy>('cap', 'charge'),
      items: fc.array(
        fc.record({
          pick: fc.nat(),
          cost: fc.constantFrom<CostKind>('missing', 'zero', 'below', 'exact', 'above'),
          wrongAccount: oneInTen,
          unknown: oneInTen,
        }),
        { minLength: 1, maxLength: 6 },
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('burst' as const),
      items: fc.array(fc.record({ account: fc.nat(2), amount: fc.integer({ min: 1, max: 6_000_000 }) }), { minLength: 2, maxLength: 6 }),
      shortTtl: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('expire' as const), hours: fc.constantFrom<0 | 2 | 48>(0, 2, 48) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('topUp' as const), account: fc.nat(2), amount: fc.integer({ min: 1, max: 3_000_000 }) }) },
);

interface ModelReservation {
  id: string;
  account: string;
  amount: number;
  expiresAt: number;
  state: 'open' | 'settled' | 'expired' | 'corrected';
}

class Model {
  readonly balance = new Map<string, number>();
  readonly held = new Map<string, number>();
  /** Accounts an over-run was debited from under 'charge': only those may go below zero. */
  readonly overdrawable = new Set<string>();
  readonly reservations: ModelReservation[] = [];

  add(map: Map<string, number>, account: string, delta: number): void {
    map.set(account, (map.get(account) ?? 0) + delta);
  }

  settle(request: SettlementRequest, policy: OverrunPolicy, reservation: ModelReservation | undefined): SettlementOutcome {
    const unchanged = (result: 'duplicate' | 'unknown_reservation' | 'account_mismatch', reserved: number): SettlementOutcome =>
      ({ reservationId: request.reservationId, result, reserved, charged: 0, released: 0, overrun: 0 });
    if (reservation === undefined) return unchanged('unknown_reservation', 0);
    if (reservation.account !== request.accountId) return unchanged('account_mismatch', reservation.amount);
    if (reservation.state === 'settled' || reservation.state === 'corrected') return unchanged('duplicate', reservation.amount);
    const { amount, account } = reservation;
    const charged = request.cost === null ? amount : Math.min(request.cost, amount);
    const overrun = request.cost === null ? 0 : Math.max(0, request.cost - amount);
    const debit = charged + (policy === 'charge' ? overrun : 0);
    if (policy === 'charge' && overrun > 0) this.overdrawable.add(account);
    if (reservation.state === 'open') {
      this.add(this.balance, account, -debit);
      this.add(this.held, account, -amount);
      reservation.state = 'settled';
    } else {
      // The sweeper already charged `amount`.
      this.add(this.balance, account, amount - debit);
      reservation.state = 'corrected';
    }
    return {
      reservationId: request.reservationId,
      result: reservation.state === 'settled' ? 'settled' : 'corrected',
      reserved: amount,
      charged,
      released: amount - charged,
      overrun,
    };
  }
}

function costOf(kind: CostKind, amount: number): number | null {
  switch (kind) {
    case 'missing':
      return null;
    case 'zero':
      return 0;
    case 'below':
      return Math.floor(amount / 3);
    case 'exact':
      return amount;
    case 'above':
      return amount + 777_777;
  }
}

async function run(ledger: SqlLedger, openings: number[], steps: Step[]): Promise<void> {
  const model = new Model();
  for (const [i, account] of ACCOUNTS.entries()) {
    await ledger.createAccount(account, openings[i]!);
    model.balance.set(account, openings[i]!);
    model.held.set(account, 0);
  }

  const check = async (context: string) => {
    for (const account of ACCOUNTS) {
      const balance = model.balance.get(account)!;
      const held = model.held.get(account)!;
      const actual = await ledger.account(account);
      expect(actual, `${context}: ${account}`).to.deep.equal({ accountId: account, balance, held, available: balance - held });
      const journal = await ledger.statement(account);
      expect(journal.reduce((sum, line) => sum + line.amount, 0), `${context}: ${account} sum of entries`).to.equal(balance);
      if (!model.overdrawable.has(account)) expect(balance - held, `${context}: ${account} available`).to.be.at.least(0);
    }
    expect(await ledger.audit(), context).to.deep.equal([]);
    expect(await ledger.openReservations(), context).to.equal(model.reservations.filter((r) => r.state === 'open').length);
  };

  for (const [index, current] of steps.entries()) {
    const context = `step ${index} ${JSON.stringify(current)}`;
    if (current.kind === 'reserve' || current.kind === 'burst') {
      const items = current.kind === 'reserve' ? [current] : current.items;
      const requests = items.map(({ account, amount }) => reserveRequest(ACCOUNTS[account]!, amount, current.shortTtl ? 60 : 6 * 3_600));
      const results = await Promise.all(requests.map((request) => ledger.reserve(request)));
      // The same as one reserve after another, in the order they were submitted.
      for (const [i, request] of requests.entries()) {
        const account = request.accountId;
        const available = model.balance.get(account)! - model.held.get(account)!;
        const result = results[i]!;
        if (available >= request.amount) {
          expect(result.ok, `${context} #${i}`).to.equal(true);
          if (!result.ok) return;
          model.add(model.held, account, request.amount);
          model.reservations.push({ id: request.reservationId, account, amount: request.amount, expiresAt: result.expiresAt.getTime(), state: 'open' });
        } else {
          expect(result, `${context} #${i}`).to.deep.equal({ ok: false, reason: 'insufficient_credits', available });
        }
      }
    } else if (current.kind === 'settle') {
      const requests: SettlementRequest[] = [];
      const targets: Array<ModelReservation | undefined> = [];
      for (const item of current.items) {
        const reservation = model.reservations.length === 0 || item.unknown ? undefined : model.reservations[item.pick % model.reservations.length];
        const amount = reservation?.amount ?? 1_000_000;
        const account = reservation === undefined ? 'a' : item.wrongAccount ? ACCOUNTS.find((a) => a !== reservation.account)! : reservation.account;
        requests.push(settlementRequest(reservation?.id ?? `unknown-${item.pick}`, account, costOf(item.cost, amount)));
        targets.push(reservation);
      }
      const expected = requests.map((request, i) => model.settle(request, current.policy, targets[i]));
      expect(await ledger.settle(requests, current.policy), context).to.deep.equal(expected);
    } else if (current.kind === 'expire') {
      const now = Date.now() + current.hours * HOUR;
      const stale = model.reservations.filter((r) => r.state === 'open' && r.expiresAt <= now);
      expect(await ledger.expireStale(new Date(now), 10_000), context).to.equal(stale.length);
      for (const reservation of stale) {
        model.add(model.balance, reservation.account, -reservation.amount);
        model.add(model.held, reservation.account, -reservation.amount);
        reservation.state = 'expired';
      }
    } else {
      await ledger.topUp(ACCOUNTS[current.account]!, current.amount);
      model.add(model.balance, ACCOUNTS[current.account]!, current.amount);
    }
    await check(context);
  }

  // Every reservation ends, once: the sweeper closes what no span did, and each reservation has
  // exactly one charge entry (and a correction only if it was expired first).
  await ledger.expireStale(new Date(Date.now() + 100 * HOUR), 10_000);
  expect(await ledger.openReservations()).to.equal(0);
  const entries = (await Promise.all(ACCOUNTS.map((account) => ledger.statement(account)))).flat();
  for (const reservation of model.reservations) {
    const own = entries.filter((entry) => entry.reservationId === reservation.id);
    expect(own.filter((entry) => entry.kind === 'charge'), reservation.id).to.have.length(1);
    expect(own.filter((entry) => entry.kind === 'correction'), reservation.id).to.have.length(reservation.state === 'corrected' ? 1 : 0);
  }
}

function property(open: OpenTestLedger, numRuns: number): Promise<void> {
  return fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 20_000_000 }), { minLength: 3, maxLength: 3 }), fc.array(step, { minLength: 1, maxLength: 30 }), async (openings, steps) => {
      const db = await open();
      try {
        await run(db.ledger, openings, steps);
      } finally {
        await db.dispose();
      }
    }),
    { numRuns },
  );
}

describe('ledger properties', function () {
  this.timeout(300_000);

  it('PGlite: balances, holds and reservation endings follow the model after every step', async () => {
    const pglite = pgliteLedgers();
    try {
      await property(pglite.open, 40);
    } finally {
      await pglite.close();
    }
  });

  if (DATABASE_URL === undefined) {
    it('PostgreSQL: skipped, set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it');
  } else {
    const url = DATABASE_URL;
    it('PostgreSQL: the same', () => property(postgresLedgers(url), 40));
  }
});
