/**
 * Replicas sharing one PostgreSQL ledger: two pools stand for two gateway (or settlement)
 * replicas. PostgreSQL only — PGlite is one connection, nothing runs concurrently there.
 */
import { expect } from 'chai';
import pg from 'pg';
import { openPostgresLedger, type SqlLedger } from '../../ledger/index.js';
import type { SettlementOutcome, SettlementRequest } from '../../ledger/types.js';
import { reserveRequest, settlementRequest } from './conformance.js';
import { createSchema, DATABASE_URL } from './databases.js';

const C = 1_000_000;

describe('ledger replicas on PostgreSQL', function () {
  this.timeout(60_000);
  if (DATABASE_URL === undefined) {
    it('is skipped: set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it');
    return;
  }
  const url = DATABASE_URL;

  let schema: Awaited<ReturnType<typeof createSchema>>;
  let replicas: SqlLedger[];

  beforeEach(async () => {
    schema = await createSchema(url);
    // Two replicas starting at once: the migration advisory lock makes one wait for the other.
    replicas = await Promise.all([openPostgresLedger(schema.config({ max: 8 })), openPostgresLedger(schema.config({ max: 8 }))]);
  });
  afterEach(async () => {
    await Promise.all(replicas.map((replica) => replica.close()));
    await schema.drop();
  });

  async function query(sql: string): Promise<Array<Record<string, unknown>>> {
    const client = new pg.Client(schema.config());
    await client.connect();
    try {
      return (await client.query(sql)).rows;
    } finally {
      await client.end();
    }
  }

  it('migrates once when two replicas start at once', async () => {
    expect((await query('SELECT version FROM schema_migrations')).map((row) => row.version)).to.deep.equal(['001', '002', '003']);
  });

  for (const [affordable, contenders] of [
    [1, 50],
    [37, 200],
  ] as const) {
    it(`grants exactly ${affordable} of ${contenders} concurrent reserves across two replicas`, async () => {
      const amount = 1_234_567;
      // One micro-credit short of affordable + 1 reservations.
      await replicas[0]!.createAccount('hot', (affordable + 1) * amount - 1);
      const results = await Promise.all(
        Array.from({ length: contenders }, (_, i) => replicas[i % 2]!.reserve(reserveRequest('hot', amount))),
      );
      expect(results.filter((result) => result.ok)).to.have.length(affordable);
      const refused = results.filter((result) => !result.ok);
      expect(refused.every((result) => !result.ok && result.reason === 'insufficient_credits')).to.equal(true);
      expect(await replicas[1]!.account('hot')).to.deep.equal({
        accountId: 'hot',
        balance: (affordable + 1) * amount - 1,
        held: affordable * amount,
        available: amount - 1,
      });
      expect(await replicas[0]!.openReservations()).to.equal(affordable);
      expect(await replicas[0]!.audit()).to.deep.equal([]);
    });
  }

  it('settles each reservation exactly once when two replicas settle overlapping batches', async () => {
    const accounts = Array.from({ length: 20 }, (_, i) => `acct-${String(i).padStart(2, '0')}`);
    for (const account of accounts) await replicas[0]!.createAccount(account, 1_000 * C);
    const requests: SettlementRequest[] = [];
    for (let i = 0; i < 1_000; i++) {
      const account = accounts[i % accounts.length]!;
      const request = reserveRequest(account, 2 * C);
      expect((await replicas[i % 2]!.reserve(request)).ok).to.equal(true);
      // Costs 0.5 to 2.5 credits: some over-run the 2 reserved.
      requests.push(settlementRequest(request.reservationId, account, 500_000 + (Math.floor(i / accounts.length) % 5) * 500_000));
    }
    // Each replica gets the whole delivery, in opposite orders and cut into different batches, so
    // the batches overlap in reservations and in accounts.
    const batches = (list: SettlementRequest[], size: number) =>
      Array.from({ length: Math.ceil(list.length / size) }, (_, i) => list.slice(i * size, (i + 1) * size));
    const settleAll = async (replica: SqlLedger, list: SettlementRequest[], size: number) => {
      const outcomes: SettlementOutcome[] = [];
      await Promise.all(batches(list, size).map(async (batch) => outcomes.push(...(await replica.settle(batch, 'charge')))));
      return outcomes;
    };
    const [first, second] = await Promise.all([
      settleAll(replicas[0]!, requests, 250),
      settleAll(replicas[1]!, [...requests].reverse(), 300),
    ]);

    const results = new Map<string, string[]>();
    for (const outcome of [...first, ...second]) {
      results.set(outcome.reservationId, [...(results.get(outcome.reservationId) ?? []), outcome.result]);
    }
    expect(results.size).to.equal(1_000);
    for (const [id, seen] of results) expect(seen.sort(), id).to.deep.equal(['duplicate', 'settled']);

    // Each account had 50 reservations, 10 of each cost 0.5, 1, 1.5, 2, 2.5 (the 'charge' policy
    // debits the 0.5 over-run): 10 × 7.5 = 75 credits charged of 1,000.
    for (const account of accounts) {
      expect(await replicas[1]!.account(account)).to.deep.equal({ accountId: account, balance: 925 * C, held: 0, available: 925 * C });
    }
    expect(await query(`SELECT count(*)::int AS n FROM entries WHERE kind = 'charge'`)).to.deep.equal([{ n: 1_000 }]);
    expect(await replicas[0]!.audit()).to.deep.equal([]);
  });

  it('keeps every account consistent while replicas reserve, settle and sweep the same accounts', async () => {
    const accounts = ['a', 'b', 'c', 'd'];
    for (const account of accounts) await replicas[0]!.createAccount(account, 100 * C);
    const reserved: SettlementRequest[] = [];
    let gatewaysRunning = true;
    const gateway = async (replica: SqlLedger, count: number) => {
      for (let i = 0; i < count; i++) {
        const account = accounts[i % accounts.length]!;
        // A TTL of 1 ms: the sweeper races the settlements for every one of them.
        const request = { ...reserveRequest(account, 300_000), ttlSeconds: 0.001 };
        if ((await replica.reserve(request)).ok) reserved.push(settlementRequest(request.reservationId, account, 100_000));
      }
    };
    const settler = async (replica: SqlLedger) => {
      while (reserved.length > 0 || gatewaysRunning) {
        const batch = reserved.splice(0, 20);
        // Deliver every batch twice, the second time after the first has settled.
        if (batch.length > 0) await replica.settle(batch, 'cap');
        if (batch.length > 0) await replica.settle(batch.reverse(), 'cap');
        await new Promise((resolve) => setImmediate(resolve));
      }
    };
    const sweeper = async () => {
      while (gatewaysRunning) await replicas[0]!.expireStale(new Date(Date.now() + 60_000), 7);
    };
    const settlers = Promise.all([settler(replicas[0]!), settler(replicas[1]!), sweeper()]);
    await Promise.all([gateway(replicas[0]!, 150), gateway(replicas[1]!, 150)]);
    gatewaysRunning = false;
    await settlers;
    await replicas[1]!.expireStale(new Date(Date.now() + 60_000), 1_000);

    expect(await replicas[0]!.openReservations()).to.equal(0);
    expect(await replicas[0]!.audit()).to.deep.equal([]);
    // However each reservation ended (settled on time, or expired then corrected), it was
    // charged once, and its span's 0.1 credit in the end: 300 × 0.1 = 30 credits in all.
    const [totals] = await query(`
      SELECT count(*) FILTER (WHERE kind = 'charge')::int AS charges,
             count(DISTINCT reservation_id) FILTER (WHERE kind = 'charge')::int AS reservations,
             count(*) FILTER (WHERE kind = 'correction')::int AS corrections,
             (SELECT count(*)::int FROM reservations WHERE state = 'corrected') AS corrected,
             (SELECT count(*)::int FROM reservations WHERE state = 'expired') AS uncorrected,
             sum(amount) FILTER (WHERE kind <> 'topup')::bigint AS net
        FROM entries`);
    const { corrections, ...rest } = totals!;
    expect(rest).to.deep.equal({ charges: 300, reservations: 300, corrected: corrections, uncorrected: 0, net: String(-30 * C) });
  });
});
