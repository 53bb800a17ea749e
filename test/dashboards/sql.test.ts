/**
 * Every PostgreSQL panel of the dashboards runs against the real ledger schema: the migrations
 * (ledger/migrations/*.sql) are applied to an in-memory PGlite, each query is EXPLAINed with
 * Grafana's macros and variables expanded, then run on a small seeded ledger.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { PGlite } from '@electric-sql/pglite';
import { expect } from 'chai';
import { sqlQueries, type PanelQuery } from '../../dashboards/catalog.js';

const MIGRATIONS = new URL('../../ledger/migrations/', import.meta.url);
const ACCOUNT = 'acct-1';

/**
 * What Grafana's PostgreSQL datasource does before sending a query, for the macros and
 * variables the dashboards use (the time range: the last and the next day).
 */
function expandGrafanaSql(sql: string): string {
  const expanded = sql
    .replace(/\$__timeFilter\(([^)]+)\)/g, `$1 BETWEEN now() - interval '1 day' AND now() + interval '1 day'`)
    .replace(/\$__timeGroupAlias\(([^,]+), \$__interval\)/g, `floor(extract(epoch from $1) / 60) * 60 AS "time"`)
    .replaceAll('${account:sqlstring}', `'${ACCOUNT}'`);
  expect(expanded, 'a Grafana macro or variable this test does not expand').to.not.match(/\$/);
  return expanded;
}

/** One account with a top-up, a settled reservation and one left open past its TTL. */
const SEED = `
  INSERT INTO accounts (id, balance, held) VALUES ('${ACCOUNT}', 7500000, 2000000), ('acct-2', 100, 0);
  INSERT INTO reservations (id, account_id, amount, provider, model, pricing_version, expires_at,
                            state, outcome, cost, charged, released, overrun, usage, settled_at)
    VALUES ('res-1', '${ACCOUNT}', 3000000, 'openai', 'gpt-4o', 'v1', now() + interval '15 minutes',
            'settled', 'completed', 2500000, 2500000, 500000, 0, '{"input_tokens": 1200}', now());
  INSERT INTO reservations (id, account_id, amount, provider, model, pricing_version, expires_at)
    VALUES ('res-2', '${ACCOUNT}', 2000000, 'anthropic', 'claude-sonnet-4', 'v1', now() - interval '1 minute');
  INSERT INTO entries (account_id, kind, amount) VALUES ('${ACCOUNT}', 'topup', 10000000), ('acct-2', 'topup', 100);
  INSERT INTO entries (account_id, kind, amount, reservation_id, outcome)
    VALUES ('${ACCOUNT}', 'charge', -2500000, 'res-1', 'completed');
`;

describe('dashboards: ledger SQL', function () {
  this.timeout(60_000);
  const queries = sqlQueries();
  let db: PGlite;

  before(async () => {
    db = new PGlite();
    const files = readdirSync(MIGRATIONS).filter((f) => f.endsWith('.sql')).sort();
    expect(files, 'ledger/migrations/*.sql').to.not.be.empty;
    for (const file of files) await db.exec(readFileSync(new URL(file, MIGRATIONS), 'utf8'));
  });

  after(async () => {
    await db.close();
  });

  it('finds the Accounts dashboard queries', () => {
    expect(queries.map((q) => q.panel)).to.include.members(['Top accounts by spend', 'Statement']);
  });

  for (const q of queries) {
    it(`${q.dashboard} / ${q.panel} is valid on the ledger schema (EXPLAIN)`, async () => {
      await db.query(`EXPLAIN ${expandGrafanaSql(q.query)}`);
    });
  }

  describe('on a seeded ledger', () => {
    before(async () => {
      await db.exec(SEED);
    });

    const run = async (panel: string) => {
      const query = queries.find((q: PanelQuery) => q.panel === panel);
      expect(query, panel).to.not.equal(undefined);
      const result = await db.query<Record<string, unknown>>(expandGrafanaSql(query!.query));
      return result.rows;
    };

    it('runs every query', async () => {
      for (const q of queries) await db.query(expandGrafanaSql(q.query));
    });

    it('ranks accounts by net spend in credits', async () => {
      const [top, ...rest] = await run('Top accounts by spend');
      expect(rest).to.have.length(0); // acct-2 only topped up
      expect(top).to.include({ Account: ACCOUNT, 'Charged requests': 1, 'Expired (charged in full)': 0 });
      expect(Number(top!.Spent)).to.equal(2.5);
      expect(Number(top!['Available now'])).to.equal(5.5);
    });

    it('lists the statement newest first with the balance after each entry', async () => {
      const rows = await run('Statement');
      expect(rows.map((r) => [r.Entry, Number(r.Amount), Number(r['Balance after']), r.Reservation])).to.deep.equal([
        ['charge', -2.5, 7.5, 'res-1'],
        ['topup', 10, 10, null],
      ]);
      expect(rows[0]).to.include({ Provider: 'openai', Model: 'gpt-4o', Outcome: 'completed' });
    });

    it('shows open reservations the sweeper missed', async () => {
      const rows = await run('Open reservations past their TTL');
      expect(rows).to.have.length(1);
      expect(rows[0]).to.include({ Account: ACCOUNT, 'Overdue reservations': 1 });
      expect(Number(rows[0]!.Held)).to.equal(2);
    });
  });
});
