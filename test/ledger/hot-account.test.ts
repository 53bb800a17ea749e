/**
 * One hot account, several gateway PROCESSES (hot-account-gateway.ts) reserving on it at once
 * against one PostgreSQL, with group commit on (the ledger's default, ledger/group-commit.ts),
 * one of them killed with SIGKILL mid-run: PostgreSQL only, since PGlite is one process's
 * database. And group commit's options, on PGlite.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { expect } from 'chai';
import pg from 'pg';
import { openPgliteLedger, openPostgresLedger, type SqlLedger } from '../../ledger/index.js';
import type { ReserveStats } from '../../ledger/types.js';
import { expectLedgerError, reserveRequest, settlementRequest } from './conformance.js';
import { createSchema, DATABASE_URL } from './databases.js';
import type { GatewayConfig } from './hot-account-gateway.js';

const C = 1_000_000;
const HOUR = 3_600_000;
const GATEWAY = fileURLToPath(new URL('./hot-account-gateway.ts', import.meta.url));

interface Admitted {
  id: string;
  amount: number;
}

/** A running gateway process and what it has said so far. */
interface Gateway {
  child: ChildProcess;
  prefix: string;
  admitted: Admitted[];
  refusals: Array<{ amount: number; available: number }>;
  stats: ReserveStats | null;
  ready: Promise<void>;
  /** Resolves with the exit code, or the signal that ended it. */
  exited: Promise<number | NodeJS.Signals>;
}

function startGateway(config: GatewayConfig): Gateway {
  const child = spawn(process.execPath, ['--import', 'tsx', GATEWAY, JSON.stringify(config)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const gateway: Gateway = {
    child,
    prefix: config.prefix,
    admitted: [],
    refusals: [],
    stats: null,
    ready: undefined as unknown as Promise<void>,
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code ?? -1))),
  };
  gateway.ready = new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`gateway ${config.prefix} exited (${code}) before it was ready`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const [word, ...rest] = line.split(' ');
      if (word === 'ready') resolve();
      else if (word === 'ok') gateway.admitted.push({ id: rest[0]!, amount: Number(rest[1]) });
      else if (word === 'no') gateway.refusals.push({ amount: Number(rest[0]), available: Number(rest[1]) });
      else if (word === 'stats') gateway.stats = JSON.parse(rest.join(' ')) as ReserveStats;
    });
  });
  return gateway;
}

describe('hot account: gateway processes reserving on one account', function () {
  this.timeout(180_000);

  it('rejects a maxReserveBatch that is not a whole number from 1 to 10,000, naming the option', async () => {
    for (const value of [0, 1.5, 10_001, '8']) {
      await expectLedgerError(openPgliteLedger('memory://', { maxReserveBatch: value as number }), 'ERR_LEDGER_INVALID_ARGUMENT', 'maxReserveBatch', String(value));
      await expectLedgerError(openPostgresLedger('postgres://127.0.0.1:1/none', { maxReserveBatch: value as number }), 'ERR_LEDGER_INVALID_ARGUMENT', 'maxReserveBatch');
    }
  });

  it('caps a group at maxReserveBatch, and runs one statement per reserve at 1', async () => {
    const db = await PGlite.create('memory://');
    try {
      for (const [maxReserveBatch, statements, largestGroup] of [
        // 7 at once: they gather in one turn of the event loop, in groups of at most 2 (or 4).
        [2, 4, 2],
        [4, 2, 4],
        [1, 7, 1],
      ] as const) {
        await db.exec('DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;');
        const ledger = await openPgliteLedger(db, { maxReserveBatch });
        await ledger.createAccount('acme', 5 * C);
        const results = await Promise.all(Array.from({ length: 7 }, () => ledger.reserve(reserveRequest('acme', C))));
        expect(results.map((result) => result.ok)).to.deep.equal([true, true, true, true, true, false, false]);
        expect(ledger.reserveStats(), `maxReserveBatch ${maxReserveBatch}`).to.deep.equal({ requests: 7, admitted: 5, refused: 2, statements, largestGroup });
        expect(await ledger.audit()).to.deep.equal([]);
      }
    } finally {
      await db.close();
    }
  });

  if (DATABASE_URL === undefined) {
    it('is skipped: set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it');
    return;
  }
  const url = DATABASE_URL;

  let schema: Awaited<ReturnType<typeof createSchema>>;
  let ledger: SqlLedger;
  let raw: pg.Pool;
  let gateways: Gateway[];

  beforeEach(async () => {
    schema = await createSchema(url);
    ledger = await openPostgresLedger(schema.config({ max: 4 }));
    raw = new pg.Pool(schema.config({ max: 2 }));
    gateways = [];
  });
  afterEach(async () => {
    for (const gateway of gateways) gateway.child.kill('SIGKILL');
    await Promise.all(gateways.map((gateway) => gateway.exited));
    await ledger.close();
    await raw.end();
    await schema.drop();
  });

  function start(count: number, amounts: number[]): Gateway[] {
    for (let i = 0; i < count; i++) {
      gateways.push(startGateway({ pool: schema.config({ max: 8 }), account: 'hot', prefix: `g${i}`, loops: 64, amounts }));
    }
    return gateways;
  }

  /**
   * Until `done` settles: the account's balance, held and open reservations read in ONE snapshot,
   * over and over. Returns how many reads it made; throws at the first that breaks an invariant.
   */
  async function watch(done: Promise<unknown>): Promise<number> {
    let finished = false;
    void done.finally(() => (finished = true));
    let reads = 0;
    while (!finished) {
      const { rows } = await raw.query<{ balance: string; held: string; open: string }>(`
        SELECT a.balance, a.held,
               (SELECT coalesce(sum(amount), 0) FROM reservations WHERE account_id = a.id AND state = 'open') AS open
          FROM accounts a WHERE a.id = 'hot'`);
      const { balance, held, open } = rows[0]!;
      expect(BigInt(held) <= BigInt(balance), `held ${held} within balance ${balance}`).to.equal(true);
      expect(held, 'held = sum of open reservations').to.equal(open);
      reads++;
    }
    return reads;
  }

  async function rows(): Promise<Map<string, number>> {
    const { rows } = await raw.query<{ id: string; amount: string }>(`SELECT id, amount FROM reservations WHERE account_id = 'hot'`);
    return new Map(rows.map((row) => [row.id, Number(row.amount)]));
  }

  it('admits exactly K across three processes, one killed with SIGKILL mid-run; then every reservation ends once', async () => {
    const K = 4_000;
    // One micro-credit short of K + 1 reservations.
    await ledger.createAccount('hot', (K + 1) * C - 1);
    const [victim, ...survivors] = start(3, [C]);
    await Promise.all(gateways.map((gateway) => gateway.ready));
    for (const gateway of gateways) gateway.child.stdin!.end('go\n');

    // SIGKILL while it holds credits: once it has been told of 100 admitted reserves.
    const killed = (async () => {
      while (victim!.admitted.length < 100) {
        if (victim!.child.exitCode !== null) throw new Error('the victim finished before it could be killed: raise K');
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      victim!.child.kill('SIGKILL');
      return victim!.exited;
    })();
    const everyone = Promise.all([killed, ...survivors.map((gateway) => gateway.exited)]);
    const reads = await watch(everyone);
    const [victimEnd, ...survivorEnds] = await everyone;
    expect(victimEnd).to.equal('SIGKILL');
    expect(survivorEnds).to.deep.equal([0, 0]);
    expect(reads, 'reads during the run').to.be.greaterThan(0);

    const stored = await rows();
    // Exactly K in the end, across the fleet, the killed process's included.
    expect(stored.size).to.equal(K);
    // What a survivor was told is exactly what is stored under its prefix.
    for (const gateway of survivors) {
      const own = [...stored.keys()].filter((id) => id.startsWith(`${gateway.prefix}-`));
      expect(own.sort()).to.deep.equal(gateway.admitted.map((a) => a.id).sort());
    }
    // Every reserve the victim was told of is durable; beyond those, at most its statement in
    // flight at the kill committed (a group of at most its 64 loops), told to no one.
    const victimRows = [...stored.keys()].filter((id) => id.startsWith(`${victim!.prefix}-`));
    for (const { id } of victim!.admitted) expect(stored.has(id), id).to.equal(true);
    expect(victimRows.length - victim!.admitted.length).to.be.within(0, 64);

    // No false refusals: each refusal saw less than its amount left, and the account ends with
    // less than one reservation's worth available.
    const refusals = survivors.flatMap((gateway) => gateway.refusals);
    expect(refusals.filter((refusal) => refusal.available >= refusal.amount)).to.deep.equal([]);
    // Each survivor loop ends at its first refusal.
    expect(refusals.length).to.equal(2 * 64);
    expect(await ledger.account('hot')).to.deep.equal({ accountId: 'hot', balance: (K + 1) * C - 1, held: K * C, available: C - 1 });
    expect(await ledger.audit()).to.deep.equal([]);
    // Group commit did happen: fewer statements than reserves in every survivor.
    for (const gateway of survivors) {
      const stats = gateway.stats!;
      expect(stats.admitted).to.equal(gateway.admitted.length);
      expect(stats.refused).to.equal(gateway.refusals.length);
      expect(stats.statements).to.be.below(stats.requests);
    }

    // Every reservation ends once: the survivors' by their spans (half a credit each), the
    // victim's, whose spans never come, by the sweeper at their full amount.
    const spans = survivors.flatMap((gateway) => gateway.admitted.map((a) => settlementRequest(a.id, 'hot', C / 2)));
    for (let i = 0; i < spans.length; i += 1_000) {
      const outcomes = await ledger.settle(spans.slice(i, i + 1_000), 'cap');
      expect(outcomes.every((outcome) => outcome.result === 'settled')).to.equal(true);
    }
    expect(await ledger.expireStale(new Date(Date.now() + 2 * HOUR), 10_000)).to.equal(victimRows.length);
    expect(await ledger.openReservations()).to.equal(0);
    const charged = spans.length * (C / 2) + victimRows.length * C;
    expect(await ledger.account('hot')).to.deep.equal({ accountId: 'hot', balance: (K + 1) * C - 1 - charged, held: 0, available: (K + 1) * C - 1 - charged });
    const { rows: charges } = await raw.query<{ n: number; reservations: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT reservation_id)::int AS reservations FROM entries WHERE kind = 'charge'`,
    );
    expect(charges).to.deep.equal([{ n: K, reservations: K }]);
    expect(await ledger.audit()).to.deep.equal([]);
  });

  it('with mixed amounts, refuses only what does not fit, and stops the fleet with less than the smallest amount left', async () => {
    const amounts = [C, 3 * C, 7 * C];
    await ledger.createAccount('hot', 9_000 * C + 123);
    start(3, amounts);
    await Promise.all(gateways.map((gateway) => gateway.ready));
    for (const gateway of gateways) gateway.child.stdin!.end('go\n');
    const everyone = Promise.all(gateways.map((gateway) => gateway.exited));
    await watch(everyone);
    expect(await everyone).to.deep.equal([0, 0, 0]);

    const stored = await rows();
    const told = gateways.flatMap((gateway) => gateway.admitted);
    expect(new Map(told.map((a) => [a.id, a.amount]))).to.deep.equal(stored);
    const held = told.reduce((sum, a) => sum + a.amount, 0);
    // Every loop ended refused its smallest amount: less than 1 credit is left.
    expect(await ledger.account('hot')).to.deep.equal({ accountId: 'hot', balance: 9_000 * C + 123, held, available: 9_000 * C + 123 - held });
    expect(9_000 * C + 123 - held).to.be.below(C);
    const refusals = gateways.flatMap((gateway) => gateway.refusals);
    expect(refusals.filter((refusal) => refusal.available >= refusal.amount)).to.deep.equal([]);
    expect(await ledger.audit()).to.deep.equal([]);
  });

  it('admits exactly each account\'s K when two replicas\' groups span the same accounts in different orders, without deadlocks', async () => {
    // 40 accounts, account i affording exactly i + 1 reserves; each replica asks for every account
    // 2 * (i + 1) times, in its own shuffled order, 64 at a time: its groups hold many accounts,
    // overlapping the other replica's. A deadlock would fail reserves with SQLSTATE 40P01.
    const accounts = Array.from({ length: 40 }, (_, i) => ({ id: `acct-${String(i).padStart(2, '0')}`, k: i + 1 }));
    for (const { id, k } of accounts) await ledger.createAccount(id, k * C);
    const replicas = [await openPostgresLedger(schema.config({ max: 4 })), await openPostgresLedger(schema.config({ max: 4 }))];
    try {
      let seed = 7;
      const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
      const admitted = new Map<string, number>();
      await Promise.all(
        replicas.map(async (replica) => {
          const queue = accounts.flatMap(({ id, k }) => Array<string>(2 * k).fill(id)).sort(() => random() - 0.5);
          await Promise.all(
            Array.from({ length: 64 }, async () => {
              for (let id = queue.pop(); id !== undefined; id = queue.pop()) {
                const result = await replica.reserve(reserveRequest(id, C));
                if (result.ok) admitted.set(id, (admitted.get(id) ?? 0) + 1);
                else expect(result).to.deep.equal({ ok: false, reason: 'insufficient_credits', available: 0 });
              }
            }),
          );
          const stats = replica.reserveStats();
          expect(stats.statements).to.be.below(stats.requests / 4);
        }),
      );
      expect(Object.fromEntries(admitted)).to.deep.equal(Object.fromEntries(accounts.map(({ id, k }) => [id, k])));
      expect(await ledger.audit()).to.deep.equal([]);
    } finally {
      await Promise.all(replicas.map((replica) => replica.close()));
    }
  });
});
