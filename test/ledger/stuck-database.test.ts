/**
 * A PostgreSQL ledger whose statements cannot finish (a row lock held elsewhere stands for a
 * database that stopped answering): they are cancelled after the statement timeout, hold nothing,
 * and the gateway answers 503 instead of holding the request. PostgreSQL only.
 */
import { expect } from 'chai';
import pg from 'pg';
import { openPostgresLedger, type SqlLedger } from '../../ledger/index.js';
import { startGateway } from '../support/gateway.js';
import { post, sha256 } from '../support/http.js';
import { TEST_PRICING } from '../support/pricing.js';
import { responsesStream, SSE_HEADERS } from '../support/provider-streams.js';
import { startUpstream } from '../support/upstream.js';
import { reserveRequest } from './conformance.js';
import { createSchema, DATABASE_URL } from './databases.js';

const C = 1_000_000;

describe('a PostgreSQL ledger whose statements cannot finish', function () {
  this.timeout(60_000);
  if (DATABASE_URL === undefined) {
    it('is skipped: set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it');
    return;
  }
  const url = DATABASE_URL;

  let schema: Awaited<ReturnType<typeof createSchema>>;
  let ledger: SqlLedger | undefined;
  let locker: pg.Client | undefined;

  beforeEach(async () => {
    schema = await createSchema(url);
  });
  afterEach(async () => {
    await locker?.end();
    locker = undefined;
    await ledger?.close();
    ledger = undefined;
    await schema.drop();
  });

  /** Another session takes the account's row lock, as a long transaction would, and keeps it. */
  async function lockAccount(accountId: string): Promise<pg.Client> {
    locker = new pg.Client(schema.config());
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE', [accountId]);
    return locker;
  }

  it('migrates however short the statement timeout: migrations are exempt', async () => {
    ledger = await openPostgresLedger(schema.config({ statement_timeout: 1 }));
  });

  it("keeps a statement_timeout the connection sets itself (here -c statement_timeout in its options) over the 10 s default", async () => {
    const config = schema.config();
    ledger = await openPostgresLedger({ ...config, options: `${config.options} -c statement_timeout=500` });
    await ledger.createAccount('acct', 5 * C);
    await lockAccount('acct');
    const started = performance.now();
    const error = await ledger.reserve(reserveRequest('acct', C)).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(String(error)).to.match(/statement timeout/);
    expect(performance.now() - started).to.be.within(400, 5_000);
  });

  it('cancels a reserve stuck behind a row lock after 10 s by default: 503, nothing held, then served again', async () => {
    const upstream = await startUpstream();
    const body = responsesStream('served', { input: 5, output: 5 });
    upstream.reply({ headers: SSE_HEADERS, chunks: [body] });
    ledger = await openPostgresLedger(schema.config());
    await ledger.createAccount('acct', 5 * C);
    const key = await ledger.createKey('acct');
    const gateway = await startGateway(upstream.url, 5, { ledger, pricing: TEST_PRICING });
    try {
      const request = JSON.stringify({ model: 'gpt-4.1', input: 'hi', stream: true });
      const lock = await lockAccount('acct');
      const started = performance.now();
      const refused = await post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` });
      expect(performance.now() - started).to.be.within(9_500, 15_000);
      expect(refused.status).to.equal(503);
      expect(refused.headers['retry-after']).to.equal('1');
      expect(upstream.received).to.have.length(0);
      await lock.query('ROLLBACK');
      expect(await ledger.openReservations()).to.equal(0);
      expect(await ledger.account('acct')).to.include({ balance: 5 * C, held: 0 });
      const served = await post(`${gateway.url}/v1/responses`, request, { authorization: `Bearer ${key}` });
      expect(served.status).to.equal(200);
      expect(sha256(served.body)).to.equal(sha256(body));
    } finally {
      await gateway.close();
      await upstream.close();
    }
  });
});
