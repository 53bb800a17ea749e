import { randomUUID } from 'node:crypto';
import { expect } from 'chai';
import { groupCommit } from '../../collector/group-commit.js';
import { openLedger } from '../../ledger/index.js';
import type { Ledger, SettlementRequest } from '../../ledger/types.js';

describe('collector/group-commit', () => {
  let ledger: Ledger;
  /** The real ledger, with each settle() call's batch size written down. */
  let counted: Ledger;
  let calls: number[];

  before(async () => {
    ledger = await openLedger('memory://');
    await ledger.createAccount('acct', 1_000_000);
  });
  after(() => ledger.close());
  beforeEach(() => {
    calls = [];
    counted = Object.create(ledger, {
      settle: { value: (requests: SettlementRequest[], policy: 'cap') => (calls.push(requests.length), ledger.settle(requests, policy)) },
    });
  });

  async function reserved(count: number): Promise<SettlementRequest[]> {
    const requests: SettlementRequest[] = [];
    for (let i = 0; i < count; i++) {
      const reservationId = randomUUID();
      await ledger.reserve({ reservationId, accountId: 'acct', amount: 100, ttlSeconds: 60, provider: 'openai', model: 'gpt-4o', pricingVersion: 'v' });
      requests.push({ reservationId, accountId: 'acct', outcome: 'completed', cost: 10 * (i + 1), usage: null, pricingVersion: 'v', spanEndTime: new Date() });
    }
    return requests;
  }

  it('settles what arrives during the transactions in flight together in the next one, and hands each caller its outcomes', async () => {
    const settle = groupCommit(counted, 'cap', 1000);
    const batches = [await reserved(2), await reserved(3), await reserved(1), [{ ...(await reserved(1))[0]!, reservationId: 'nope' }]];
    const outcomes = await Promise.all(batches.map((batch) => settle(batch)));
    // The first two start at once (two transactions in flight); the other two arrived while
    // they ran and share the next one.
    expect(calls).to.deep.equal([2, 3, 2]);
    for (const [i, batch] of batches.entries()) {
      expect(outcomes[i]!.map((o) => o.reservationId)).to.deep.equal(batch.map((r) => r.reservationId));
    }
    expect(outcomes[1]!.map((o) => o.charged)).to.deep.equal([10, 20, 30]);
    expect(outcomes[3]![0]!.result).to.equal('unknown_reservation');
  });

  it('closes a group at maxGroup spans, but never splits a submission', async () => {
    const settle = groupCommit(counted, 'cap', 4);
    const batches = [await reserved(1), await reserved(3), await reserved(2), await reserved(5), await reserved(1)];
    await Promise.all(batches.map((batch) => settle(batch)));
    expect(calls).to.deep.equal([1, 3, 2, 5, 1]);
  });

  it('tells every caller of a failed group', async () => {
    const closed = await openLedger('memory://');
    await closed.close();
    const settle = groupCommit(closed, 'cap', 1000);
    const results = await Promise.allSettled([settle(await reserved(1)), settle(await reserved(1)), settle(await reserved(1))]);
    expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected', 'rejected']);
  });
});
