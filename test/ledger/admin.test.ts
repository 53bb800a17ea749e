/** The admin commands (cli/admin.ts) against a PGlite ledger. */
import { expect } from 'chai';
import { ADMIN_USAGE, runAdminCommand } from '../../cli/admin.js';
import type { SqlLedger } from '../../ledger/index.js';
import { reserveRequest, settlementRequest } from './conformance.js';
import { pgliteLedgers, type TestLedger } from './databases.js';

describe('admin commands', function () {
  this.timeout(60_000);
  const pglite = pgliteLedgers();
  let db: TestLedger;
  let ledger: SqlLedger;

  beforeEach(async () => {
    db = await pglite.open();
    ledger = db.ledger;
  });
  afterEach(() => db.dispose());
  after(() => pglite.close());

  /** Times a command opened the ledger. */
  let opened = 0;

  /** Runs a command line; returns its exit code and what it printed to stdout and stderr. */
  async function run(line: string): Promise<{ code: number; out: string[]; err: string[] }> {
    const out: string[] = [];
    const err: string[] = [];
    const withLedger = (use: (ledger: SqlLedger) => Promise<void>) => {
      opened++;
      return use(ledger);
    };
    const code = await runAdminCommand(line.split(' '), withLedger, (text) => out.push(text), (text) => err.push(text));
    return { code, out, err };
  }

  it('creates, tops up and shows an account in exact credits', async () => {
    expect(await run('accounts create acme --credits 12.5')).to.deep.equal({ code: 0, out: ['created account acme with 12.5 credits'], err: [] });
    expect((await run('accounts topup acme --credits 0.000001')).out).to.deep.equal(['added 0.000001 credits to acme; balance 12.500001 credits']);
    await ledger.reserve(reserveRequest('acme', 2_000_000));
    expect((await run('accounts show acme --json')).out).to.deep.equal([
      JSON.stringify({ accountId: 'acme', balance: '12.500001', held: '2', available: '10.500001' }),
    ]);
    expect((await run('accounts show acme')).out).to.deep.equal([
      'account    acme',
      'balance    12.500001 credits',
      'held       2 credits',
      'available  10.500001 credits',
    ]);
    expect(await ledger.account('acme')).to.deep.include({ balance: 12_500_001, held: 2_000_000 });
  });

  it('opens an account with 0 credits when --credits is left out', async () => {
    expect((await run('accounts create empty')).code).to.equal(0);
    expect(await ledger.account('empty')).to.deep.include({ balance: 0 });
  });

  it('rejects bad arguments with exit code 2, a clear message and the usage, before opening the ledger', async () => {
    await run('accounts create acme');
    opened = 0;
    for (const [line, message] of [
      ['accounts topup acme --credits=-5', 'error: --credits must not be negative, got "-5"'],
      ['accounts topup acme --credits 1.0000001', 'error: --credits has more than 6 decimal places'],
      ['accounts topup acme --credits abc', 'error: --credits must be a decimal number'],
      ['accounts topup acme --credits 0', 'error: --credits must be more than 0'],
      ['accounts topup acme', 'error: --credits is required'],
      ['accounts topup acme --credit 5', "error: Unknown option '--credit'"],
      ['accounts topup acme --credits 5 --credits 50', 'error: --credits is given more than once'],
      ['accounts create other --credits 5 --credits=50', 'error: --credits is given more than once'],
      ['accounts topup', 'error: expected one account ID, got 0'],
      ['accounts delete acme', 'error: unknown command: accounts delete acme'],
    ] as const) {
      const { code, out, err } = await run(line);
      expect(code, line).to.equal(2);
      expect(out, line).to.deep.equal([]);
      expect(err[0], line).to.contain(message);
      expect(err[1], line).to.equal(ADMIN_USAGE);
    }
    expect(await ledger.account('acme')).to.deep.include({ balance: 0 });
    // A typo neither creates an embedded data directory nor connects to PostgreSQL.
    expect(opened).to.equal(0);
    expect(await ledger.account('other')).to.equal(null);
  });

  it('refuses an unknown or existing account with exit code 1', async () => {
    expect(await run('accounts topup ghost --credits 1')).to.deep.equal({ code: 1, out: [], err: ['error: account "ghost" does not exist'] });
    expect((await run('accounts show ghost --json')).code).to.equal(1);
    expect((await run('statement ghost')).code).to.equal(1);
    await run('accounts create acme --credits 1');
    expect(await run('accounts create acme --credits 1')).to.deep.equal({ code: 1, out: [], err: ['error: account "acme" already exists'] });
  });

  it('creates a key (printed on the last line) that authenticates until revoked', async () => {
    await run('accounts create acme');
    const created = await run('keys create acme');
    expect(created.code).to.equal(0);
    const key = created.out.at(-1)!;
    expect(key).to.match(/^tg_[A-Za-z0-9_-]{43}$/);
    expect(await ledger.authenticate(key)).to.equal('acme');
    expect(await run(`keys revoke ${key}`)).to.deep.equal({ code: 0, out: ['key revoked'], err: [] });
    expect(await ledger.authenticate(key)).to.equal(null);
    expect(await run(`keys revoke ${key}`)).to.deep.equal({ code: 1, out: [], err: ['error: no active key matches'] });
    expect((await run('keys create ghost')).code).to.equal(1);
  });

  describe('statement', () => {
    let settled: string;
    let expired: string;

    beforeEach(async () => {
      await run('accounts create acme --credits 10');
      const first = reserveRequest('acme', 3_000_000);
      settled = first.reservationId;
      await ledger.reserve(first);
      await ledger.settle([{ ...settlementRequest(settled, 'acme', 3_250_000), usage: { input_tokens: 7, output_tokens: 2 } }], 'charge');
      const second = reserveRequest('acme', 1_000_000);
      expired = second.reservationId;
      await ledger.reserve(second);
      await ledger.expireStale(new Date(Date.now() + 3_600_000), 10);
    });

    it('lists the journal as CSV, amounts in credits, usage quoted', async () => {
      const { code, out } = await run('statement acme');
      expect(code).to.equal(0);
      // Drop the created_at column (second) to compare the rest exactly.
      const rows = out.map((line) => line.replace(/^([^,]*),[^,]*,/, '$1,'));
      expect(rows).to.deep.equal([
        'id,kind,amount,overrun,reservation_id,outcome,reserved,charged,released,usage',
        '1,topup,10,0,,,,,,',
        `2,charge,-3,0,${settled},completed,3,3,0,"{""input_tokens"":7,""output_tokens"":2}"`,
        `3,overrun,-0.25,0.25,${settled},completed,3,3,0,"{""input_tokens"":7,""output_tokens"":2}"`,
        `4,charge,-1,0,${expired},expired,1,1,0,`,
      ]);
      expect(out[1]).to.match(/^1,\d{4}-\d\d-\d\dT[\d:.]+Z,topup,/);
    });

    it('lists the journal as JSON', async () => {
      const { code, out } = await run('statement acme --format json');
      expect(code).to.equal(0);
      const lines = JSON.parse(out.join('\n')) as Array<Record<string, unknown>>;
      expect(lines.map(({ created_at: _, ...line }) => line)).to.deep.equal([
        { id: 1, kind: 'topup', amount: '10', overrun: '0', reservation_id: null, outcome: null, reserved: null, charged: null, released: null, usage: null },
        { id: 2, kind: 'charge', amount: '-3', overrun: '0', reservation_id: settled, outcome: 'completed', reserved: '3', charged: '3', released: '0', usage: { input_tokens: 7, output_tokens: 2 } },
        { id: 3, kind: 'overrun', amount: '-0.25', overrun: '0.25', reservation_id: settled, outcome: 'completed', reserved: '3', charged: '3', released: '0', usage: { input_tokens: 7, output_tokens: 2 } },
        { id: 4, kind: 'charge', amount: '-1', overrun: '0', reservation_id: expired, outcome: 'expired', reserved: '1', charged: '1', released: '0', usage: null },
      ]);
      // 10 - 3.25 - 1 = 5.75 credits.
      expect((await run('accounts show acme --json')).out).to.deep.equal([
        JSON.stringify({ accountId: 'acme', balance: '5.75', held: '0', available: '5.75' }),
      ]);
    });

    it('rejects an unknown format', async () => {
      const { code, err } = await run('statement acme --format xml');
      expect(code).to.equal(2);
      expect(err[0]).to.equal('error: --format must be csv or json, got "xml"');
    });
  });
});
