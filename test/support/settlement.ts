/**
 * Checks on a ledger after traffic went through the gateway and settlement: every reservation
 * ended, every request charged once and exactly what was worked out for it. Shared by the
 * end-to-end tests (test/e2e/settlement-path.test.ts) and the soak (bench/soak.ts).
 */
import { expect } from 'chai';
import type { Ledger, StatementLine } from '../../ledger/types.js';

export interface Expectation {
  account: string;
  /** The charge of each request, from its reservation line: a number, or 'reserved'. */
  charges: Array<number | 'reserved'>;
}

/** Resolves once no reservation is open; throws after `timeoutMs`. */
export async function waitUntilSettled(ledger: Ledger, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await ledger.openReservations()) > 0) {
    if (Date.now() > deadline) throw new Error(`${await ledger.openReservations()} reservations still open after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/**
 * Every reservation charged once as expected, and every balance exact to the micro-credit:
 * each account started with `initial` micro-credits.
 */
export async function checkBalances(ledger: Ledger, expectations: Expectation[], initial: number): Promise<void> {
  for (const { account, charges } of expectations) {
    const statement = await ledger.statement(account);
    const chargeLines = statement.filter((line: StatementLine) => line.kind === 'charge');
    expect(chargeLines, `${account}: one charge line per request`).to.have.length(charges.length);
    expect(new Set(chargeLines.map((line) => line.reservationId)).size).to.equal(charges.length);
    const actual = chargeLines.map((line) => 0 - line.amount).sort((a, b) => a - b);
    const expected = charges
      .map((charge, i) => (charge === 'reserved' ? chargeLines[i]!.reserved! : charge))
      .sort((a, b) => a - b);
    expect(actual, `${account}: charges`).to.deep.equal(expected);
    const total = expected.reduce((sum, charge) => sum + charge, 0);
    expect(await ledger.account(account), account).to.deep.equal({
      accountId: account,
      balance: initial - total,
      held: 0,
      available: initial - total,
    });
  }
}
