/**
 * Fresh, isolated databases for the ledger tests.
 *
 * PostgreSQL: a schema of its own per ledger (named after the process and a counter), selected
 * with search_path on every connection and dropped afterwards — runs never see each other's rows,
 * even when two test processes share the database.
 *
 * PGlite: starting an instance costs seconds, so a test file keeps one and gives each ledger a
 * freshly recreated `public` schema.
 */
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { openPgliteLedger, openPostgresLedger, type SqlLedger } from '../../ledger/index.js';

export const DATABASE_URL = process.env.DATABASE_URL;

export interface TestLedger {
  ledger: SqlLedger;
  /** Raw SQL on the ledger's database, for white-box checks (stored key hashes, the journal's triggers). */
  query(sql: string, params?: unknown[]): Promise<Array<Record<string, unknown>>>;
  /** Closes the ledger and drops its database. */
  dispose(): Promise<void>;
}

export type OpenTestLedger = () => Promise<TestLedger>;

let schemas = 0;

/** A new, empty schema; `config()` gives pool options whose connections use it. */
export async function createSchema(url: string): Promise<{ config(pool?: pg.PoolConfig): pg.PoolConfig; drop(): Promise<void> }> {
  const name = `tollgate_test_${process.pid}_${++schemas}`;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
    await admin.query(`CREATE SCHEMA ${name}`);
  } finally {
    await admin.end();
  }
  return {
    config: (pool = {}) => ({ connectionString: url, ...pool, options: `-c search_path=${name}` }),
    drop: async () => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`DROP SCHEMA ${name} CASCADE`);
      } finally {
        await client.end();
      }
    },
  };
}

export function postgresLedgers(url: string): OpenTestLedger {
  return async () => {
    const schema = await createSchema(url);
    const ledger = await openPostgresLedger(schema.config({ max: 4 }));
    const raw = new pg.Pool(schema.config({ max: 1 }));
    return {
      ledger,
      query: async (sql, params) => (await raw.query(sql, params)).rows,
      dispose: async () => {
        await ledger.close();
        await raw.end();
        await schema.drop();
      },
    };
  };
}

/** `open` hands out ledgers one at a time (each replaces the previous one's schema); `close` ends the instance. */
export function pgliteLedgers(): { open: OpenTestLedger; close(): Promise<void> } {
  let instance: Promise<PGlite> | undefined;
  return {
    open: async () => {
      instance ??= PGlite.create('memory://');
      const db = await instance;
      await db.exec('DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public;');
      const ledger = await openPgliteLedger(db);
      return {
        ledger,
        query: async (sql, params) => (await db.query<Record<string, unknown>>(sql, params)).rows,
        dispose: () => ledger.close(),
      };
    },
    close: async () => {
      if (instance !== undefined) await (await instance).close();
    },
  };
}
