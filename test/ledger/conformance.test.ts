import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLedger } from '../../ledger/index.js';
import { ledgerConformance } from './conformance.js';
import { DATABASE_URL, pgliteLedgers, postgresLedgers } from './databases.js';

describe('ledger conformance', function () {
  // Starting PGlite takes seconds on a busy machine.
  this.timeout(60_000);

  describe('PGlite', () => {
    const pglite = pgliteLedgers();
    after(() => pglite.close());
    ledgerConformance(pglite.open);
  });

  describe('PostgreSQL', function () {
    if (DATABASE_URL === undefined) {
      it('is skipped: set DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run it');
      return;
    }
    ledgerConformance(postgresLedgers(DATABASE_URL));
  });

  describe('openLedger', () => {
    it('keeps a PGlite ledger in a data directory, creating its parents', async () => {
      const root = await mkdtemp(join(tmpdir(), 'tollgate-ledger-'));
      try {
        const dataDir = join(root, '.tollgate', 'ledger');
        const first = await openLedger(dataDir);
        await first.createAccount('acme', 1_500_000);
        await first.close();
        const second = await openLedger(dataDir);
        expect(await second.account('acme')).to.deep.equal({ accountId: 'acme', balance: 1_500_000, held: 0, available: 1_500_000 });
        await second.close();
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    });

    it('keeps a PGlite data directory to one process at a time: another one is refused, and may open it once it is closed', async () => {
      const root = await mkdtemp(join(tmpdir(), 'tollgate-ledger-'));
      // Another process opens the directory: the code of the error it gets, or "opened".
      const openElsewhere = () => {
        const script = `import(${JSON.stringify(new URL('../../ledger/index.ts', import.meta.url).href)})
          .then((m) => m.openLedger(${JSON.stringify(root)})).then((l) => l.close()).then(() => console.log('opened'), (e) => console.log(e.code))`;
        return spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' }).stdout.trim();
      };
      try {
        const ledger = await openLedger(root);
        // Two processes on one directory lost each other's top-ups, then corrupted it.
        expect(openElsewhere()).to.equal('ERR_LEDGER_IN_USE');
        await ledger.close();
        expect(openElsewhere()).to.equal('opened');
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    });

    it('names the option and the value it rejects', async () => {
      for (const [url, message] of [
        ['', 'url must be'],
        ['mysql://localhost/db', 'dataDir must be a directory, file://DIRECTORY or memory://, got "mysql://localhost/db"'],
      ]) {
        let error: Error | undefined;
        await openLedger(url!).catch((caught: Error) => (error = caught));
        expect(error?.message).to.contain(message);
      }
    });
  });
});
