/**
 * Applies ledger/migrations/*.sql in file-name order, each once, recorded in schema_migrations.
 *
 * Everything runs in one transaction under an advisory lock: two replicas starting at once take
 * turns, and the second finds the first one's migrations recorded. PostgreSQL's DDL is
 * transactional, so a failing migration leaves nothing half-applied.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Driver } from './driver.js';
import * as sql from './sql.js';

const MIGRATION_FILE = /^(\d+)_[\w-]+\.sql$/;

/**
 * The .sql files sit beside this module in the source tree (ledger/migrations/), but tsc does not
 * copy them into dist/: the built module (dist/ledger/) reads them from the package's
 * ledger/migrations/, which package.json "files" ships.
 */
function migrationsDirectory(): string {
  const candidates = [new URL('./migrations/', import.meta.url), new URL('../../ledger/migrations/', import.meta.url)];
  const found = candidates.map((url) => fileURLToPath(url)).find((path) => existsSync(path));
  if (found === undefined) throw new Error(`ledger migrations not found (looked in ${candidates.join(', ')})`);
  return found;
}

/** Returns the versions it applied (empty when the schema was up to date). */
export async function migrate(driver: Driver): Promise<string[]> {
  const directory = migrationsDirectory();
  const files = (await readdir(directory)).filter((name) => MIGRATION_FILE.test(name)).sort();
  return driver.transaction(async (tx) => {
    await tx.exec(sql.NO_STATEMENT_TIMEOUT);
    await tx.query(sql.LOCK_MIGRATIONS);
    await tx.exec(sql.CREATE_MIGRATIONS_TABLE);
    const applied = new Set((await tx.query<{ version: string }>(sql.APPLIED_MIGRATIONS)).map((row) => row.version));
    const versions: string[] = [];
    for (const file of files) {
      const version = MIGRATION_FILE.exec(file)![1]!;
      if (applied.has(version)) continue;
      await tx.exec(await readFile(join(directory, file), 'utf8'));
      await tx.query(sql.RECORD_MIGRATION, [version]);
      versions.push(version);
    }
    return versions;
  });
}
