/**
 * The PostgreSQL ledger, through a `pg` connection pool. Same migrations and statements as the
 * embedded ledger (sql-ledger.ts). Any number of gateway and settlement replicas may share one
 * database: reserve is one atomic statement (for one request, or for the group of requests that
 * arrived together: group-commit.ts), and reserve, settle and expire lock rows in a fixed order.
 */
import pg from 'pg';
import type { Driver, Session } from './driver.js';
import { invalidArgument } from './errors.js';
import { migrate } from './migrate.js';
import { SqlLedger } from './sql-ledger.js';
import type { LedgerOptions } from './types.js';
import * as validate from './validate.js';

/**
 * A connection that is not up in 10 s fails, instead of holding its request while the kernel
 * retries (the caller's configuration overrides it).
 */
const POOL_DEFAULTS: pg.PoolConfig = { connectionTimeoutMillis: 10_000 };

/**
 * The statement timeout the ledger's connections get when nothing sets one (the role, the
 * database, the connection's options or URL, a pg configuration): without one, a reserve stuck
 * behind a row lock, or a server that stopped answering queries, held the gateway's request
 * forever. PostgreSQL cancels the statement and its transaction rolls back (a cancelled reserve
 * holds nothing): the gateway answers 503 (or forwards, under ledgerOutage 'forward'),
 * settlement 503, so its sender retries. Migrations lift it (migrate.ts).
 */
const DEFAULT_STATEMENT_TIMEOUT_MS = 10_000;

/** The statement timeout a connection of `config` has of itself; '0' when none is set. */
async function ownStatementTimeout(config: pg.PoolConfig): Promise<string> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    return (await client.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout;
  } finally {
    await client.end();
  }
}

/**
 * `config`: a postgres:// URL, or a pg pool configuration (e.g. `max` for the pool size, default
 * 10, or `options: '-c search_path=SCHEMA'` to keep the ledger in its own schema). `options`: see
 * LedgerOptions (group commit for reserves is on by default).
 */
export async function openPostgresLedger(config: string | pg.PoolConfig, options: LedgerOptions = {}): Promise<SqlLedger> {
  if (typeof config === 'string') {
    if (!/^postgres(ql)?:\/\//i.test(config)) throw invalidArgument('url', config, 'a postgres:// or postgresql:// URL');
    config = { connectionString: config };
  } else if (config === null || typeof config !== 'object') {
    throw invalidArgument('config', config, 'a postgres:// URL or a pg PoolConfig');
  }
  config = { ...POOL_DEFAULTS, ...config };
  // Checked before any connection is opened.
  validate.ledgerOptions(options);
  if ((await ownStatementTimeout(config)) === '0') config = { ...config, statement_timeout: DEFAULT_STATEMENT_TIMEOUT_MS };
  const pool = new pg.Pool(config);
  // An idle connection that breaks (server restart) is dropped by the pool and reported here;
  // without a listener it would crash the process. The next query fails or reconnects.
  pool.on('error', () => {});
  const driver = postgresDriver(pool);
  try {
    await migrate(driver);
  } catch (error) {
    await pool.end();
    throw error;
  }
  return new SqlLedger(driver, options);
}

/**
 * Statement names by SQL text: each statement is parsed and planned once per connection
 * (a named prepared statement) instead of on every call.
 */
const statementNames = new Map<string, string>();

function statementName(sql: string): string {
  let name = statementNames.get(sql);
  if (name === undefined) {
    name = `tollgate_${statementNames.size + 1}`;
    statementNames.set(sql, name);
  }
  return name;
}

function session(client: pg.Pool | pg.PoolClient): Session {
  return {
    async query<Row>(sql: string, params: unknown[] = []) {
      const result = await client.query({ name: statementName(sql), text: sql, values: params });
      return result.rows as Row[];
    },
    async exec(sql: string) {
      // No parameters and no name: the simple query protocol, which accepts several statements.
      await client.query(sql);
    },
  };
}

function postgresDriver(pool: pg.Pool): Driver {
  return {
    ...session(pool),
    async transaction(work) {
      const client = await pool.connect();
      let broken = false;
      // A checked-out client has no pool error listener: a connection that dies mid-transaction
      // (PostgreSQL restarting) would emit an unhandled 'error' and kill the process. Note it; the
      // query in flight rejects on its own, and release(true) discards the connection.
      const onError = () => {
        broken = true;
      };
      client.on('error', onError);
      try {
        await client.query('BEGIN');
        const result = await work(session(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        // A failed ROLLBACK means the connection is broken: release(true) discards it.
        await client.query('ROLLBACK').catch(() => {
          broken = true;
        });
        throw error;
      } finally {
        client.off('error', onError);
        client.release(broken);
      }
    },
    close: () => pool.end(),
  };
}
