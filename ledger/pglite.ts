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
import lockfile from 'proper-lockfile';
import type { Driver, Session } from './driver.js';
import { invalidArgument, LedgerError } from './errors.js';
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
  let release = async () => {};
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
    if (scheme !== 'memory') {
      const directory = dataDir.replace(/^file:\/\//i, '');
      // PGlite creates the directory itself, but not its parents (./.tollgate/ledger).
      await mkdir(directory, { recursive: true });
      release = await lockDirectory(directory);
    }
    try {
      db = await PGlite.create(dataDir);
    } catch (error) {
      await release();
      throw error;
    }
    owned = true;
  }
  const driver = pgliteDriver(db, owned, release);
  try {
    await migrate(driver);
  } catch (error) {
    await driver.close();
    throw error;
  }
  return new SqlLedger(driver, options);
}

/**
 * PGlite does not stop a second process from opening the same data directory, and two of them
 * lose each other's writes, then corrupt it (seen with four CLI processes topping up at once:
 * "MultiXactId 1 has not been created yet"). A lock beside the directory (DIR.lock, refreshed
 * every 5 s, stale after 10 s without refresh: a killed process does not hold it for long)
 * makes the second one fail at once, and say why.
 */
async function lockDirectory(directory: string): Promise<() => Promise<void>> {
  try {
    return await lockfile.lock(directory, { stale: 10_000, update: 5_000, retries: 0, realpath: false });
  } catch (error) {
    if ((error as { code?: string }).code !== 'ELOCKED') throw error;
    throw new LedgerError(
      'ERR_LEDGER_IN_USE',
      `the ledger in ${directory} is open in another process (the embedded ledger is one process's at a time: stop it first, or use PostgreSQL)`,
    );
  }
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

/** `release`: unlocks the data directory once the instance is closed. */
function pgliteDriver(db: PGlite, owned: boolean, release: () => Promise<void>): Driver {
  return {
    ...session(db),
    transaction: (work) => db.transaction((tx) => work(session(tx))),
    close: async () => {
      if (!owned) return;
      await db.close();
      await release();
    },
  };
}
