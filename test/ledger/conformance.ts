/**
 * The one conformance suite every Ledger passes (PGlite and PostgreSQL: conformance.test.ts).
 * Amounts are exact micro-credits; the arithmetic is in the comments.
 */
import { expect } from 'chai';
import { hashKey, LedgerError, type SqlLedger } from '../../ledger/index.js';
import type { KeyReserveRequest, OverrunPolicy, ReserveRequest, SettlementRequest } from '../../ledger/types.js';
import type { OpenTestLedger, TestLedger } from './databases.js';

/** One credit. */
const C = 1_000_000;
const HOUR = 3_600_000;

let sequence = 0;

export function reserveRequest(accountId: string, amount: number, ttlSeconds = 60): ReserveRequest {
  return {
    reservationId: `res-${++sequence}`,
    accountId,
    amount,
    ttlSeconds,
    provider: 'openai',
    model: 'gpt-test',
    pricingVersion: 'p1',
  };
}

function keyReserveRequest(apiKey: string, amount: number): KeyReserveRequest {
  const { accountId: _, ...request } = reserveRequest('', amount);
  return { ...request, apiKey };
}

export function settlementRequest(reservationId: string, accountId: string, cost: number | null): SettlementRequest {
  return {
    reservationId,
    accountId,
    outcome: 'completed',
    cost,
    usage: cost === null ? null : { input_tokens: 10, output_tokens: 20 },
    pricingVersion: 'p1',
    spanEndTime: new Date(),
  };
}

/** Rejects with a LedgerError of `code` whose message contains every one of `parts`. */
export async function expectLedgerError(promise: Promise<unknown>, code: string, ...parts: string[]): Promise<void> {
  let caught: unknown;
  try {
    await promise;
  } catch (error) {
    caught = error;
  }
  expect(caught, 'an error').to.be.instanceOf(LedgerError);
  expect((caught as LedgerError).code).to.equal(code);
  for (const part of parts) expect((caught as LedgerError).message).to.contain(part);
}

export function ledgerConformance(open: OpenTestLedger): void {
  let db: TestLedger;
  let ledger: SqlLedger;

  beforeEach(async () => {
    db = await open();
    ledger = db.ledger;
  });
  afterEach(async () => {
    await db.dispose();
  });

  /** Reserves and expects success; returns the reservation id. */
  async function reserve(accountId: string, amount: number, ttlSeconds = 60): Promise<string> {
    const request = reserveRequest(accountId, amount, ttlSeconds);
    const result = await ledger.reserve(request);
    expect(result.ok, `reserve ${amount} on ${accountId}`).to.equal(true);
    return request.reservationId;
  }

  /** Exact balance and held, and the journal and the open reservations agree with them. */
  async function expectAccount(accountId: string, balance: number, held: number): Promise<void> {
    expect(await ledger.account(accountId)).to.deep.equal({ accountId, balance, held, available: balance - held });
    const journal = await ledger.statement(accountId);
    expect(journal.reduce((sum, line) => sum + line.amount, 0), 'sum of entries').to.equal(balance);
    expect(await ledger.audit()).to.deep.equal([]);
  }

  describe('accounts', () => {
    it('opens an account with a top-up entry, and top-ups add entries', async () => {
      await ledger.createAccount('acme', 12_500_000);
      await ledger.topUp('acme', 1);
      await expectAccount('acme', 12_500_001, 0);
      const lines = await ledger.statement('acme');
      expect(lines.map((line) => [line.kind, line.amount, line.reservationId, line.outcome])).to.deep.equal([
        ['topup', 12_500_000, null, null],
        ['topup', 1, null, null],
      ]);
    });

    it('opens an account with 0 credits without an entry', async () => {
      await ledger.createAccount('empty', 0);
      await expectAccount('empty', 0, 0);
      expect(await ledger.statement('empty')).to.deep.equal([]);
    });

    it('refuses to create an account twice, and leaves the first alone', async () => {
      await ledger.createAccount('acme', 5 * C);
      await expectLedgerError(ledger.createAccount('acme', 7 * C), 'ERR_LEDGER_ACCOUNT_EXISTS', 'acme');
      await expectAccount('acme', 5 * C, 0);
    });

    it('refuses a top-up that would take the balance past 2^53 - 1 micro-credits, the most every reader takes', async () => {
      await ledger.createAccount('rich', Number.MAX_SAFE_INTEGER - 5);
      await ledger.topUp('rich', 5);
      await expectLedgerError(ledger.topUp('rich', 1), 'ERR_LEDGER_BALANCE_RANGE', 'rich', '9007199254740991');
      await expectAccount('rich', Number.MAX_SAFE_INTEGER, 0);
    });

    it('refuses a top-up of an unknown account', async () => {
      await expectLedgerError(ledger.topUp('ghost', C), 'ERR_LEDGER_UNKNOWN_ACCOUNT', 'ghost');
      expect(await ledger.account('ghost')).to.equal(null);
    });

    it('rejects amounts that are not safe integers, naming the option and the value', async () => {
      await expectLedgerError(ledger.createAccount('a', 1.5), 'ERR_LEDGER_INVALID_ARGUMENT', 'createAccount: amount', '1.5');
      await expectLedgerError(ledger.createAccount('a', -1), 'ERR_LEDGER_INVALID_ARGUMENT', 'createAccount: amount', '-1');
      await expectLedgerError(ledger.createAccount('a', 2 ** 53), 'ERR_LEDGER_INVALID_ARGUMENT', '9007199254740992');
      await expectLedgerError(ledger.createAccount('a', '5' as never), 'ERR_LEDGER_INVALID_ARGUMENT', '"5"');
      await expectLedgerError(ledger.createAccount('', 0), 'ERR_LEDGER_INVALID_ARGUMENT', 'createAccount: accountId');
      await ledger.createAccount('a', 0);
      await expectLedgerError(ledger.topUp('a', 0), 'ERR_LEDGER_INVALID_ARGUMENT', 'topUp: amount', 'positive');
      await expectAccount('a', 0, 0);
    });
  });

  describe('keys', () => {
    it('creates a tg_ key that authenticates its account until revoked', async () => {
      await ledger.createAccount('acme', 0);
      const key = await ledger.createKey('acme');
      expect(key).to.match(/^tg_[A-Za-z0-9_-]{43}$/);
      expect(await ledger.authenticate(key)).to.equal('acme');
      expect(await ledger.authenticate(key + 'x')).to.equal(null);
      expect(await ledger.revokeKey(key)).to.equal(true);
      expect(await ledger.authenticate(key)).to.equal(null);
      expect(await ledger.revokeKey(key)).to.equal(false);
    });

    it('answers each key for itself: live, unknown, revoked', async () => {
      await ledger.createAccount('acme', 0);
      await ledger.createAccount('beta', 0);
      const [acme, beta, revoked] = [await ledger.createKey('acme'), await ledger.createKey('beta'), await ledger.createKey('beta')];
      await ledger.revokeKey(revoked);
      const keys = [acme, 'unknown-key', beta, revoked, acme];
      expect(await Promise.all(keys.map((key) => ledger.authenticate(key)))).to.deep.equal(['acme', null, 'beta', null, 'acme']);
    });

    it('stores keys only as SHA-256 hashes', async () => {
      await ledger.createAccount('acme', 0);
      const generated = await ledger.createKey('acme');
      await ledger.addKey('acme', 'operator-chosen-key');
      const rows = await db.query('SELECT * FROM api_keys ORDER BY key_hash');
      expect(rows.map((row) => row.key_hash)).to.have.members([hashKey(generated), hashKey('operator-chosen-key')]);
      const stored = JSON.stringify(rows);
      expect(stored).not.to.contain(generated);
      expect(stored).not.to.contain('operator-chosen-key');
    });

    it('registers an operator key once, for an existing account only, and never echoes it', async () => {
      await ledger.createAccount('acme', 0);
      await ledger.addKey('acme', 'sk-operator');
      expect(await ledger.authenticate('sk-operator')).to.equal('acme');
      await expectLedgerError(ledger.addKey('acme', 'sk-operator'), 'ERR_LEDGER_KEY_EXISTS');
      await expectLedgerError(ledger.addKey('ghost', 'sk-other'), 'ERR_LEDGER_UNKNOWN_ACCOUNT', 'ghost');
      let message = '';
      await ledger.addKey('acme', 'has space').catch((error: Error) => (message = error.message));
      expect(message).to.contain('addKey: key').and.not.to.contain('has space');
      expect(await ledger.authenticate('unknown-key')).to.equal(null);
    });
  });

  describe('reserve', () => {
    it('holds credits without touching the balance', async () => {
      await ledger.createAccount('acme', 10 * C);
      const before = Date.now();
      const result = await ledger.reserve(reserveRequest('acme', 4 * C, 120));
      expect(result.ok).to.equal(true);
      if (!result.ok) return;
      // expires_at = the database's now() + 120 s.
      expect(result.expiresAt.getTime()).to.be.within(before + 119_000, Date.now() + 121_000);
      await expectAccount('acme', 10 * C, 4 * C);
      expect(await ledger.openReservations()).to.equal(1);
    });

    it('refuses what is not available and says what is', async () => {
      await ledger.createAccount('acme', 10 * C);
      await reserve('acme', 6 * C);
      // 10 - 6 = 4 credits available: 4 credits + 1 micro-credit is refused, exactly 4 is not.
      expect(await ledger.reserve(reserveRequest('acme', 4 * C + 1))).to.deep.equal({
        ok: false,
        reason: 'insufficient_credits',
        available: 4 * C,
      });
      await expectAccount('acme', 10 * C, 6 * C);
      await reserve('acme', 4 * C);
      await expectAccount('acme', 10 * C, 10 * C);
    });

    it('refuses an unknown account', async () => {
      expect(await ledger.reserve(reserveRequest('ghost', 1))).to.deep.equal({ ok: false, reason: 'unknown_account', available: 0 });
      expect(await ledger.openReservations()).to.equal(0);
    });

    it('grants exactly as many concurrent reserves as the account can afford', async () => {
      await ledger.createAccount('acme', 7 * C + 999_999);
      // 7.999999 credits cover 7 reservations of 1 credit; 20 race for them.
      const results = await Promise.all(Array.from({ length: 20 }, () => ledger.reserve(reserveRequest('acme', C))));
      expect(results.filter((result) => result.ok)).to.have.length(7);
      await expectAccount('acme', 7 * C + 999_999, 7 * C);
    });

    it('rejects a reused reservation id without holding anything', async () => {
      await ledger.createAccount('acme', 10 * C);
      const request = reserveRequest('acme', C);
      await ledger.reserve(request);
      let failed = false;
      await ledger.reserve(request).catch(() => (failed = true));
      expect(failed).to.equal(true);
      await expectAccount('acme', 10 * C, C);
    });

    it('admits reserves that arrive together in arrival order, each against what the ones before it left', async () => {
      await ledger.createAccount('acme', 10 * C);
      // Submitted at once: they gather in one turn of the event loop and go as one statement.
      const amounts = [6 * C, 5 * C, 3 * C, 2 * C, C, C];
      const results = await Promise.all(amounts.map((amount) => ledger.reserve(reserveRequest('acme', amount))));
      // 10 - 6 = 4: 5 refused; 4 - 3 = 1: 2 refused; 1 - 1 = 0: the last 1 refused.
      expect(results.map((result) => (result.ok ? 'ok' : result.available))).to.deep.equal(['ok', 4 * C, 'ok', C, 'ok', 0]);
      expect(results.every((result) => result.ok || result.reason === 'insufficient_credits')).to.equal(true);
      expect(ledger.reserveStats()).to.deep.equal({ requests: 6, admitted: 3, refused: 3, statements: 1, largestGroup: 6 });
      await expectAccount('acme', 10 * C, 10 * C);
      expect(await ledger.openReservations()).to.equal(3);
    });

    it('admits reserves of several accounts that arrive together in one statement, each account on its own', async () => {
      // Ids chosen so that id order differs from arrival order.
      await ledger.createAccount('zeta', 5 * C);
      await ledger.createAccount('alpha', 2 * C);
      const requests: Array<[string, number]> = [
        ['zeta', 3 * C], ['alpha', 2 * C], ['ghost', C], ['zeta', 3 * C], ['alpha', 1], ['zeta', 2 * C], ['ghost', C],
      ];
      const results = await Promise.all(requests.map(([account, amount]) => ledger.reserve(reserveRequest(account, amount))));
      // zeta: 5 - 3 = 2, the next 3 refused, 2 fits; alpha: 2 - 2 = 0, then 1 micro-credit refused.
      expect(results).to.deep.equal([
        { ok: true, expiresAt: (results[0] as { expiresAt: Date }).expiresAt },
        { ok: true, expiresAt: (results[0] as { expiresAt: Date }).expiresAt },
        { ok: false, reason: 'unknown_account', available: 0 },
        { ok: false, reason: 'insufficient_credits', available: 2 * C },
        { ok: false, reason: 'insufficient_credits', available: 0 },
        { ok: true, expiresAt: (results[0] as { expiresAt: Date }).expiresAt },
        { ok: false, reason: 'unknown_account', available: 0 },
      ]);
      expect(ledger.reserveStats()).to.deep.include({ requests: 7, admitted: 3, statements: 1, largestGroup: 7 });
      await expectAccount('zeta', 5 * C, 5 * C);
      await expectAccount('alpha', 2 * C, 2 * C);
      expect(await ledger.openReservations()).to.equal(3);
    });

    it('fails only the reserve that reuses a reservation id among reserves that arrive together', async () => {
      await ledger.createAccount('acme', 10 * C);
      const taken = reserveRequest('acme', C);
      await reserve('acme', 3 * C);
      const first = reserveRequest('acme', 2 * C);
      const results = await Promise.allSettled([
        ledger.reserve(first),
        ledger.reserve(reserveRequest('acme', C)),
        ledger.reserve({ ...taken, reservationId: first.reservationId }),
        ledger.reserve(reserveRequest('acme', 4 * C)),
      ]);
      expect(results.map((result) => result.status)).to.deep.equal(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
      expect(results.map((result) => result.status === 'fulfilled' && result.value.ok)).to.deep.equal([true, true, false, true]);
      // 3 + 2 + 1 + 4: the reused id held nothing.
      await expectAccount('acme', 10 * C, 10 * C);
    });

    it('refuses every reserve of an unknown account among reserves that arrive together', async () => {
      const results = await Promise.all(Array.from({ length: 4 }, () => ledger.reserve(reserveRequest('ghost', C))));
      expect(results).to.deep.equal(Array(4).fill({ ok: false, reason: 'unknown_account', available: 0 }));
      expect(await ledger.openReservations()).to.equal(0);
    });

    it('reserves for the account of a live key, and refuses unknown and revoked keys', async () => {
      await ledger.createAccount('acme', 10 * C);
      const key = await ledger.createKey('acme');
      const result = await ledger.reserveForKey(keyReserveRequest(key, 4 * C));
      expect(result).to.deep.include({ ok: true, accountId: 'acme' });
      expect(await ledger.reserveForKey(keyReserveRequest(key, 7 * C))).to.deep.equal({
        ok: false,
        reason: 'insufficient_credits',
        accountId: 'acme',
        available: 6 * C,
      });
      await ledger.revokeKey(key);
      expect(await ledger.reserveForKey(keyReserveRequest(key, C))).to.deep.equal({ ok: false, reason: 'unknown_key' });
      expect(await ledger.reserveForKey(keyReserveRequest('unknown-key', C))).to.deep.equal({ ok: false, reason: 'unknown_key' });
      await expectAccount('acme', 10 * C, 4 * C);
      expect(await ledger.openReservations()).to.equal(1);
    });

    it('reserves for keys that arrive together in one statement, two keys of one account drawing on one balance', async () => {
      await ledger.createAccount('zeta', 10 * C);
      await ledger.createAccount('alpha', C);
      const [zeta1, zeta2, alpha, revoked] = [
        await ledger.createKey('zeta'), await ledger.createKey('zeta'), await ledger.createKey('alpha'), await ledger.createKey('alpha'),
      ];
      await ledger.revokeKey(revoked);
      const requests: Array<[string, number]> = [
        [zeta1, 6 * C], ['unknown-key', C], [zeta2, 5 * C], [revoked, C], [alpha, 2 * C], [zeta2, 3 * C], [zeta1, C], [alpha, C],
      ];
      const results = await Promise.all(requests.map(([apiKey, amount]) => ledger.reserveForKey(keyReserveRequest(apiKey, amount))));
      // zeta: 10 - 6 = 4, the 5 refused, 4 - 3 = 1, 1 - 1 = 0 — whichever of its keys asked;
      // alpha: 2 refused on 1, then 1 fits.
      expect(results.map((result) => (result.ok ? `${result.accountId} ok` : result.reason === 'unknown_key' ? 'unknown' : `${result.accountId} ${result.available}`))).to.deep.equal([
        'zeta ok', 'unknown', `zeta ${4 * C}`, 'unknown', `alpha ${C}`, 'zeta ok', 'zeta ok', 'alpha ok',
      ]);
      expect(ledger.reserveStats()).to.deep.equal({ requests: 8, admitted: 4, refused: 2, statements: 1, largestGroup: 8 });
      await expectAccount('zeta', 10 * C, 10 * C);
      await expectAccount('alpha', C, C);
      expect(await ledger.openReservations()).to.equal(4);
    });

    it('rejects invalid requests, naming the field', async () => {
      await expectLedgerError(ledger.reserve(reserveRequest('acme', 0)), 'ERR_LEDGER_INVALID_ARGUMENT', 'reserve: amount', '0');
      await expectLedgerError(ledger.reserve(reserveRequest('acme', C, 0)), 'ERR_LEDGER_INVALID_ARGUMENT', 'reserve: ttlSeconds');
      // 1e300 s failed its whole group statement; 1e12 s held credits past what the sweeper reaches.
      for (const ttl of [1e12, 1e300]) {
        await expectLedgerError(ledger.reserve(reserveRequest('acme', C, ttl)), 'ERR_LEDGER_INVALID_ARGUMENT', 'reserve: ttlSeconds', 'at most 31622400');
      }
      await expectLedgerError(ledger.reserve({ ...reserveRequest('acme', C), reservationId: '' }), 'ERR_LEDGER_INVALID_ARGUMENT', 'reservationId');
      // PostgreSQL text cannot hold a NUL: refused before the group statement, which the others
      // of its group then reach unharmed.
      await ledger.createAccount('acme', 10 * C);
      const [nul, fine] = await Promise.allSettled([
        ledger.reserve({ ...reserveRequest('acme', C), model: 'gpt\u0000' }),
        ledger.reserve(reserveRequest('acme', C)),
      ]);
      expect(nul.status === 'rejected' && (nul.reason as LedgerError).message).to.contain('reserve: model');
      expect(fine.status === 'fulfilled' && fine.value.ok).to.equal(true);
      let message = '';
      await ledger.reserveForKey(keyReserveRequest('has space', C)).catch((error: Error) => (message = error.message));
      expect(message).to.contain('reserveForKey: apiKey').and.not.to.contain('has space');
    });
  });

  describe('settle', () => {
    beforeEach(async () => {
      await ledger.createAccount('acme', 10 * C);
    });

    it('charges the cost and releases the rest', async () => {
      const id = await reserve('acme', 3 * C);
      const [outcome] = await ledger.settle([settlementRequest(id, 'acme', 1_250_000)], 'cap');
      expect(outcome).to.deep.equal({ reservationId: id, result: 'settled', reserved: 3 * C, charged: 1_250_000, released: 1_750_000, overrun: 0 });
      // 10 - 1.25 = 8.75 credits.
      await expectAccount('acme', 8_750_000, 0);
      const line = (await ledger.statement('acme'))[1]!;
      expect(line).to.deep.include({
        kind: 'charge',
        amount: -1_250_000,
        overrun: 0,
        reservationId: id,
        outcome: 'completed',
        usage: { input_tokens: 10, output_tokens: 20 },
        reserved: 3 * C,
        charged: 1_250_000,
        released: 1_750_000,
      });
      expect(await ledger.openReservations()).to.equal(0);
    });

    it('charges the whole reservation when the usage is missing', async () => {
      const id = await reserve('acme', 3 * C);
      const [outcome] = await ledger.settle([settlementRequest(id, 'acme', null)], 'cap');
      expect(outcome).to.deep.include({ result: 'settled', charged: 3 * C, released: 0, overrun: 0 });
      await expectAccount('acme', 7 * C, 0);
    });

    it('charges nothing for a request the upstream never served', async () => {
      const id = await reserve('acme', 3 * C);
      const [outcome] = await ledger.settle([{ ...settlementRequest(id, 'acme', 0), outcome: 'upstream_error' }], 'cap');
      expect(outcome).to.deep.include({ result: 'settled', charged: 0, released: 3 * C });
      await expectAccount('acme', 10 * C, 0);
      expect((await ledger.statement('acme'))[1]).to.deep.include({ kind: 'charge', amount: 0, outcome: 'upstream_error' });
    });

    it("caps an over-run at the reserved amount under 'cap', recording the excess", async () => {
      const id = await reserve('acme', 3 * C);
      const [outcome] = await ledger.settle([settlementRequest(id, 'acme', 3_400_000)], 'cap');
      expect(outcome).to.deep.include({ result: 'settled', reserved: 3 * C, charged: 3 * C, released: 0, overrun: 400_000 });
      // Only the 3 reserved credits are charged: 10 - 3 = 7.
      await expectAccount('acme', 7 * C, 0);
      const lines = await ledger.statement('acme');
      expect(lines.slice(1).map((line) => [line.kind, line.amount, line.overrun])).to.deep.equal([
        ['charge', -3 * C, 0],
        ['overrun', 0, 400_000],
      ]);
    });

    it("debits an over-run under 'charge', even below zero", async () => {
      const id = await reserve('acme', 10 * C);
      const [outcome] = await ledger.settle([settlementRequest(id, 'acme', 12_000_001)], 'charge');
      expect(outcome).to.deep.include({ result: 'settled', charged: 10 * C, released: 0, overrun: 2_000_001 });
      // 10 - 12.000001 = -2.000001 credits; available is negative too.
      await expectAccount('acme', -2_000_001, 0);
      expect(await ledger.reserve(reserveRequest('acme', 1))).to.deep.equal({ ok: false, reason: 'insufficient_credits', available: -2_000_001 });
      const lines = await ledger.statement('acme');
      expect(lines.slice(1).map((line) => [line.kind, line.amount, line.overrun])).to.deep.equal([
        ['charge', -10 * C, 0],
        ['overrun', -2_000_001, 2_000_001],
      ]);
    });

    it("debits over-runs under 'charge' only as far as the balance stays a safe integer, holds still open included", async () => {
      // Two spans at the largest cost a span may carry would take the balance to about -2^54:
      // unreadable, and past BIGINT soon after (which failed the batch, and every retry of it).
      const MAX = Number.MAX_SAFE_INTEGER;
      const [first, second, third] = [await reserve('acme', 2 * C), await reserve('acme', 3 * C), await reserve('acme', C)];
      const outcomes = await ledger.settle([settlementRequest(first, 'acme', MAX), settlementRequest(second, 'acme', MAX)], 'charge');
      expect(outcomes.map((outcome) => [outcome.charged, outcome.overrun])).to.deep.equal([
        [2 * C, MAX - 2 * C],
        [3 * C, MAX - 3 * C],
      ]);
      // The first over-run is debited whole; the second down to an available amount of -2^53 + 1,
      // leaving room for the hold still open (1 credit); the rest of it is absorbed.
      await expectAccount('acme', C - MAX, C);
      await ledger.settle([settlementRequest(third, 'acme', null)], 'charge');
      await expectAccount('acme', -MAX, 0);
      const lines = await ledger.statement('acme');
      expect(lines.slice(1).map((line) => [line.kind, line.amount, line.overrun])).to.deep.equal([
        ['charge', -2 * C, 0],
        ['overrun', -(MAX - 2 * C), MAX - 2 * C],
        ['charge', -3 * C, 0],
        ['overrun', -6 * C, MAX - 3 * C],
        ['charge', -C, 0],
      ]);
    });

    it('changes nothing when the same span is delivered again', async () => {
      const id = await reserve('acme', 3 * C);
      await ledger.settle([settlementRequest(id, 'acme', C)], 'cap');
      const journal = await ledger.statement('acme');
      const [again] = await ledger.settle([settlementRequest(id, 'acme', 2 * C)], 'charge');
      expect(again).to.deep.equal({ reservationId: id, result: 'duplicate', reserved: 3 * C, charged: 0, released: 0, overrun: 0 });
      expect(await ledger.statement('acme')).to.deep.equal(journal);
      await expectAccount('acme', 9 * C, 0);
    });

    it('refuses usage it cannot store before the batch, which then settles whole (a NUL in a name failed every retry of it)', async () => {
      const id = await reserve('acme', 3 * C);
      const bad = { ...settlementRequest(id, 'acme', C), usage: { 'input\u0000tokens': 1 } };
      await expectLedgerError(ledger.settle([bad], 'cap'), 'ERR_LEDGER_INVALID_ARGUMENT', 'settle: requests[0].usage');
      const fractional = { ...settlementRequest(id, 'acme', C), usage: { input_tokens: 1.5 } };
      await expectLedgerError(ledger.settle([fractional], 'cap'), 'ERR_LEDGER_INVALID_ARGUMENT', 'settle: requests[0].usage');
      await expectAccount('acme', 10 * C, 3 * C);
    });

    it('settles a reservation that appears twice in one batch once', async () => {
      const id = await reserve('acme', 3 * C);
      const outcomes = await ledger.settle([settlementRequest(id, 'acme', C), settlementRequest(id, 'acme', C)], 'cap');
      expect(outcomes.map((outcome) => outcome.result)).to.deep.equal(['settled', 'duplicate']);
      await expectAccount('acme', 9 * C, 0);
    });

    it('changes nothing for an unknown reservation or a span naming another account', async () => {
      await ledger.createAccount('other', 5 * C);
      const id = await reserve('acme', 3 * C);
      const outcomes = await ledger.settle([settlementRequest('nope', 'acme', C), settlementRequest(id, 'other', C)], 'charge');
      expect(outcomes).to.deep.equal([
        { reservationId: 'nope', result: 'unknown_reservation', reserved: 0, charged: 0, released: 0, overrun: 0 },
        { reservationId: id, result: 'account_mismatch', reserved: 3 * C, charged: 0, released: 0, overrun: 0 },
      ]);
      await expectAccount('acme', 10 * C, 3 * C);
      await expectAccount('other', 5 * C, 0);
      expect(await ledger.openReservations()).to.equal(1);
    });

    it('settles a batch across accounts in one call, outcomes in request order', async () => {
      await ledger.createAccount('beta', 2 * C);
      const a1 = await reserve('acme', 2 * C);
      const b1 = await reserve('beta', 2 * C);
      const a2 = await reserve('acme', C);
      const outcomes = await ledger.settle(
        [settlementRequest(b1, 'beta', 500_000), settlementRequest(a1, 'acme', 2_500_000), settlementRequest(a2, 'acme', null)],
        'charge',
      );
      expect(outcomes.map((outcome) => [outcome.reservationId, outcome.result, outcome.charged, outcome.overrun])).to.deep.equal([
        [b1, 'settled', 500_000, 0],
        [a1, 'settled', 2 * C, 500_000],
        [a2, 'settled', C, 0],
      ]);
      // acme: 10 - 2.5 - 1 = 6.5; beta: 2 - 0.5 = 1.5.
      await expectAccount('acme', 6_500_000, 0);
      await expectAccount('beta', 1_500_000, 0);
    });

    it('accepts an empty batch and rejects invalid requests, naming the field', async () => {
      expect(await ledger.settle([], 'cap')).to.deep.equal([]);
      const id = await reserve('acme', C);
      await expectLedgerError(ledger.settle([settlementRequest(id, 'acme', -5)], 'cap'), 'ERR_LEDGER_INVALID_ARGUMENT', 'requests[0].cost', '-5');
      await expectLedgerError(ledger.settle([settlementRequest(id, 'acme', 1)], 'free' as never), 'ERR_LEDGER_INVALID_ARGUMENT', 'policy', '"free"');
      await expectLedgerError(
        ledger.settle([{ ...settlementRequest(id, 'acme', 1), outcome: 'great' as never }], 'cap'),
        'ERR_LEDGER_INVALID_ARGUMENT',
        'requests[0].outcome',
      );
      await expectAccount('acme', 10 * C, C);
    });
  });

  describe('expiry and late spans', () => {
    const later = () => new Date(Date.now() + HOUR);

    beforeEach(async () => {
      await ledger.createAccount('acme', 10 * C);
    });

    it('settles reservations past their TTL at the reserved amount', async () => {
      const stale = await reserve('acme', 2 * C, 60);
      await reserve('acme', 3 * C, 7_200);
      expect(await ledger.expireStale(new Date(), 100)).to.equal(0);
      expect(await ledger.expireStale(later(), 100)).to.equal(1);
      // The 2 stale credits are charged; the 3 of the reservation still in its TTL stay held.
      await expectAccount('acme', 8 * C, 3 * C);
      expect(await ledger.openReservations()).to.equal(1);
      expect((await ledger.statement('acme'))[1]).to.deep.include({
        kind: 'charge',
        amount: -2 * C,
        reservationId: stale,
        outcome: 'expired',
        reserved: 2 * C,
        charged: 2 * C,
        released: 0,
        usage: null,
      });
      expect(await ledger.expireStale(later(), 100)).to.equal(0);
    });

    it('expires at most `limit` reservations per call', async () => {
      for (let i = 0; i < 3; i++) await reserve('acme', C, 1);
      expect(await ledger.expireStale(later(), 2)).to.equal(2);
      expect(await ledger.expireStale(later(), 2)).to.equal(1);
      await expectAccount('acme', 7 * C, 0);
      await expectLedgerError(ledger.expireStale(later(), 0), 'ERR_LEDGER_INVALID_ARGUMENT', 'expireStale: limit', '0');
    });

    it('corrects an expired reservation when its span arrives late, then ignores repeats', async () => {
      const id = await reserve('acme', 3 * C);
      await ledger.expireStale(later(), 100);
      await expectAccount('acme', 7 * C, 0);
      const [late] = await ledger.settle([settlementRequest(id, 'acme', 1_200_000)], 'cap');
      expect(late).to.deep.equal({ reservationId: id, result: 'corrected', reserved: 3 * C, charged: 1_200_000, released: 1_800_000, overrun: 0 });
      // Where an on-time settlement leaves it: 10 - 1.2 = 8.8 (= 7 + a correction of 1.8).
      await expectAccount('acme', 8_800_000, 0);
      const lines = await ledger.statement('acme');
      expect(lines.slice(1).map((line) => [line.kind, line.amount, line.outcome])).to.deep.equal([
        ['charge', -3 * C, 'expired'],
        ['correction', 1_800_000, 'completed'],
      ]);
      const [again] = await ledger.settle([settlementRequest(id, 'acme', 1_200_000)], 'cap');
      expect(again!.result).to.equal('duplicate');
      await expectAccount('acme', 8_800_000, 0);
    });

    for (const [policy, balance, overrunAmount] of [
      // cap: the sweeper's 3 credits stand; the 0.5 excess is recorded only.
      ['cap', 7 * C, 0],
      // charge: 10 - 3.5 = 6.5.
      ['charge', 6_500_000, -500_000],
    ] as const) {
      it(`ends a late over-running span where an on-time one would (${policy})`, async () => {
        const late = await reserve('acme', 3 * C);
        await ledger.expireStale(later(), 100);
        await ledger.settle([settlementRequest(late, 'acme', 3_500_000)], policy as OverrunPolicy);
        await expectAccount('acme', balance, 0);
        const lines = await ledger.statement('acme');
        expect(lines.slice(2).map((line) => [line.kind, line.amount, line.overrun])).to.deep.equal([
          ['correction', 0, 0],
          ['overrun', overrunAmount, 500_000],
        ]);
      });
    }

    it('keeps the full charge when the late span has no usage', async () => {
      const id = await reserve('acme', 3 * C);
      await ledger.expireStale(later(), 100);
      const [late] = await ledger.settle([settlementRequest(id, 'acme', null)], 'cap');
      expect(late).to.deep.include({ result: 'corrected', charged: 3 * C, released: 0 });
      await expectAccount('acme', 7 * C, 0);
    });
  });

  describe('journal', () => {
    it('refuses to update, delete or truncate entries', async () => {
      await ledger.createAccount('acme', 5 * C);
      for (const statement of ['UPDATE entries SET amount = 0', 'DELETE FROM entries', 'TRUNCATE entries']) {
        let error: Error | undefined;
        await db.query(statement).catch((caught: Error) => (error = caught));
        expect(error?.message, statement).to.contain('append-only');
      }
      await expectAccount('acme', 5 * C, 0);
    });

    it('audit reports an account whose balance disagrees with its journal', async () => {
      await ledger.createAccount('acme', 5 * C);
      await reserve('acme', C);
      await db.query(`UPDATE accounts SET balance = balance + 1, held = held - 1 WHERE id = 'acme'`);
      expect(await ledger.audit()).to.deep.equal([
        { accountId: 'acme', balance: 5 * C + 1, entriesTotal: 5 * C, held: C - 1, openTotal: C },
      ]);
    });

    it('records each applied migration', async () => {
      const rows = await db.query('SELECT version FROM schema_migrations ORDER BY version');
      expect(rows.map((row) => row.version)).to.deep.equal(['001', '002', '003']);
    });
  });
}
