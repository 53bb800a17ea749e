/**
 * The embedded ledger: PostgreSQL compiled to WebAssembly (PGlite), in process, persisted to a
 * data directory (or kept in memory with `memory://`). Same migrations and statements as the
 * PostgreSQL ledger (sql-ledger.ts).
 *
 * PGlite is a single connection that queues callers: a transaction runs alone, which makes every
 * row lock uncontended. Only one process may open a data directory at a time.
 */
import { PGlite, type Transaction } from '@electric-sql/pglite';
import { mkdir } from 'node:fs/promises';
import type { Driver, Session } from './driver.js';
import { invalidArgument } from './errors.js';
import { migrate } from './migrate.js';
import { SqlLedger } from './sql-ledger.js';
import type { LedgerOptions } from './types.js';
import * as validate from './validate.js';

/**
 * `dataDir`: a directory (created with its parents when missing), `file://` + a directory, or
 * `memory://` for a ledger that lives as long as the process. Or an open PGlite instance, which
 * the ledger uses but does not close. `options`: see LedgerOptions.
 */
export async function openPgliteLedger(dataDir: string | PGlite, options: LedgerOptions = {}): Promise<SqlLedger> {
  validate.ledgerOptions(options);
  let db: PGlite;
  let owned: boolean;
  if (dataDir instanceof PGlite) {
    db = dataDir;
    owned = false;
  } else {
    if (typeof dataDir !== 'string' || dataDir === '') {
      throw invalidArgument('dataDir', dataDir, 'a directory, file://DIRECTORY or memory://');
    }
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(dataDir)?.[1]?.toLowerCase();
    if (scheme !== undefined && scheme !== 'memory' && scheme !== 'file') {
      throw invalidArgument('dataDir', dataDir, 'a directory, file://DIRECTORY or memory://');
    }
    // PGlite creates the directory itself, but not its parents (./.tollgate/ledger).
    if (scheme !== 'memory') await mkdir(dataDir.replace(/^file:\/\//i, ''), { recursive: true });
    db = await PGlite.create(dataDir);
    owned = true;
  }
  const driver = pgliteDriver(db, owned);
  await migrate(driver);
  return new SqlLedger(driver, options);
}

function session(db: PGlite | Transaction): Session {
  return {
    async query<Row>(sql: string, params?: unknown[]) {
      return (await db.query<Row>(sql, params)).rows;
    },
    async exec(sql: string) {
      await db.exec(sql);
    },
  };
}

function pgliteDriver(db: PGlite, owned: boolean): Driver {
  return {
    ...session(db),
    transaction: (work) => db.transaction((tx) => work(session(tx))),
    close: async () => {
      if (owned) await db.close();
    },
  };
}
