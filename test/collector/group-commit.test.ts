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
    // Each settle() waits for the test to open it, so that the waves below overlap for sure.
    const gates: Array<() => void> = [];
    const gated: Ledger = Object.create(counted, {
      settle: { value: (requests: SettlementRequest[], policy: 'cap') => new Promise<void>((open) => gates.push(open)).then(() => counted.settle(requests, policy)) },
    });
    const settle = groupCommit(gated, 'cap', 1000);
    const batches = [await reserved(2), await reserved(3), await reserved(1), await reserved(1), [{ ...(await reserved(1))[0]!, reservationId: 'nope' }]];
    const turn = () => new Promise((resolve) => setImmediate(resolve));
    // Submitted in one turn: one transaction. The next submission takes the second slot.
    const outcomes = [settle(batches[0]!), settle(batches[1]!)];
    await turn();
    outcomes.push(settle(batches[2]!));
    await turn();
    // Two in flight: these two wait, and go together once one of them commits.
    outcomes.push(settle(batches[3]!), settle(batches[4]!));
    await turn();
    expect(gates).to.have.length(2);
    gates[0]!();
    while (gates.length < 3) await turn();
    gates[1]!();
    gates[2]!();
    const results = await Promise.all(outcomes);
    expect(calls).to.deep.equal([5, 1, 2]);
    for (const [i, batch] of batches.entries()) {
      expect(results[i]!.map((o) => o.reservationId)).to.deep.equal(batch.map((r) => r.reservationId));
    }
    expect(results[1]!.map((o) => o.charged)).to.deep.equal([10, 20, 30]);
    expect(results[4]![0]!.result).to.equal('unknown_reservation');
  });

  it('closes a group at maxGroup spans, but never splits a submission', async () => {
    const settle = groupCommit(counted, 'cap', 4);
    const batches = [await reserved(1), await reserved(3), await reserved(2), await reserved(5), await reserved(1)];
    await Promise.all(batches.map((batch) => settle(batch)));
    expect(calls).to.deep.equal([4, 2, 5, 1]);
  });

  it('tells every caller of a failed group', async () => {
    const closed = await openLedger('memory://');
    await closed.close();
    const settle = groupCommit(closed, 'cap', 1000);
    const batches = [await reserved(1), await reserved(1), await reserved(1)];
    const results = await Promise.allSettled(batches.map((batch) => settle(batch)));
    expect(results.map((r) => r.status)).to.deep.equal(['rejected', 'rejected', 'rejected']);
  });
});
