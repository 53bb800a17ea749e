/**
 * `tollgate demo` as a user runs it: a child process, a small mix, the exit code, and a report
 * whose totals agree with each other — reservation rows against journal entries, balances
 * against top-ups and charges.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { formatReport, parseDemoArgs, type DemoReport } from '../cli/demo.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const REQUESTS = 60;

describe('tollgate demo', function () {
  // A gateway, an embedded ledger and 60 streamed requests on a shared 2-core machine.
  this.timeout(120_000);

  let report: DemoReport;
  before(async () => {
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', 'cli/main.ts', 'demo', '--requests', String(REQUESTS), '--seed', '7', '--json'],
      { cwd: ROOT },
    );
    // execFile rejects on a non-zero exit code: getting here means the command exited 0.
    report = JSON.parse(stdout) as DemoReport;
  });

  it('accounts for every request: settled with an outcome, or refused with 402', () => {
    const settled = Object.values(report.outcomes).reduce((sum, totals) => sum + totals.requests, 0);
    expect(settled + report.rejected).to.equal(REQUESTS);
    expect(report.requests).to.equal(REQUESTS);
  });

  it('drives every kind of request the demo promises', () => {
    const { outcomes } = report;
    expect(outcomes.completed?.requests, 'completed').to.be.above(0);
    expect(outcomes.cancelled?.requests, 'cancelled by the client').to.equal(report.clientLeft).and.above(0);
    expect(outcomes.upstream_error?.requests, 'upstream errors').to.be.above(0);
    expect(outcomes.completed!.usageMissing, 'chat without include_usage').to.be.above(0);
    const overruns = Object.values(outcomes).reduce((sum, totals) => sum + totals.overruns, 0);
    expect(overruns, 'over-runs').to.be.above(0);
    expect(report.rejected, '402 once initech runs dry').to.be.above(0);
  });

  it('splits every settled reservation into charged + released', () => {
    for (const [outcome, totals] of Object.entries(report.outcomes)) {
      expect(totals.charged + totals.released, outcome).to.equal(totals.reserved);
      expect(totals.charged, outcome).to.be.at.most(totals.reserved);
    }
  });

  it('leaves each account at its initial credits minus what it was charged, nothing held', () => {
    for (const account of report.accounts) {
      expect(account.balance, account.id).to.equal(account.initial - account.charged);
      expect(account.held, account.id).to.equal(0);
    }
    // The reservation rows (per outcome) and the journal entries (per account) tell the same total:
    // under the default 'cap' policy an over-run is recorded but not debited.
    const chargedByOutcome = Object.values(report.outcomes).reduce((sum, totals) => sum + totals.charged, 0);
    const chargedByAccount = report.accounts.reduce((sum, account) => sum + account.charged, 0);
    expect(chargedByAccount).to.equal(chargedByOutcome);
  });

  it('prints the same figures as tables without --json', () => {
    const text = formatReport(report);
    const total = text.split('\n').find((line) => line.startsWith('total'))!;
    expect(total.split(/\s+/)[1]).to.equal(String(REQUESTS));
    expect(text).to.include('Accounts (balance = initial - charged)');
  });

  it('refuses a malformed --requests', () => {
    expect(() => parseDemoArgs(['--requests', '0'])).to.throw(/--requests must be a positive integer/);
    expect(parseDemoArgs([])).to.deep.equal({ requests: 300, seed: 1, concurrency: 8, json: false });
  });
});
