/**
 * One gateway and one settlement process (the CLI, as separate processes) on a PostgreSQL
 * database, and the checks the soak makes on the ledger afterwards.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { openPostgresLedger, type SqlLedger } from '../../ledger/index.js';
import { parseSample } from '../../test/support/otelcol.js';
import { writeTestPricingFile } from '../../test/support/pricing.js';
import type { ExitStatus } from '../../test/support/otelcol.js';
import { startTollgate, type TollgateProcess } from '../../test/support/processes.js';
import { checkBalances, waitUntilSettled } from '../../test/support/settlement.js';
import { accountArgs, type Account, type Book } from './traffic.js';

const TOKEN = 'soak-settlement-token';
const PROBE = pathToFileURL(path.join(path.dirname(new URL(import.meta.url).pathname), 'loop-probe.mjs')).href;

export interface Stack {
  gateway: TollgateProcess;
  settle: TollgateProcess;
  /** Where loop-probe.mjs writes the gateway's event-loop lag and live heap. */
  probeFile: string;
  ledgerUrl: string;
  /** A sample of the gateway's /metrics (undefined when absent). */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  metricsText(): Promise<string>;
  /** A check that neither process has exited (the log's first error lines when one has). */
  survived(): Check;
  stop(): Promise<void>;
}

export async function startStack(options: {
  ledgerUrl: string;
  upstream: string;
  accounts: Account[];
  credits: number;
  serveArgs?: string[];
}): Promise<Stack> {
  const pricing = writeTestPricingFile();
  // Settlement on core 0, the gateway on core 1 (when taskset exists); PostgreSQL and this
  // process (clients + fake upstream) unpinned.
  const settle = await startTollgate('settle', ['--port', '0', '--ledger', options.ledgerUrl, '--pricing', pricing], {
    env: { TOLLGATE_SETTLEMENT_TOKENS: TOKEN },
    core: 0,
  });
  const probeFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'tollgate-soak-')), 'loop.jsonl');
  let gateway: TollgateProcess;
  try {
    gateway = await startTollgate(
      'serve',
      [
        '--port', '0',
        '--ledger', options.ledgerUrl,
        '--pricing', pricing,
        '--openai-upstream', options.upstream,
        '--otlp-endpoint', `${settle.url}/v1/traces`,
        ...accountArgs(options.accounts, options.credits),
        ...(options.serveArgs ?? []),
      ],
      { env: { TOLLGATE_OTLP_TOKEN: TOKEN, NODE_OPTIONS: `--expose-gc --import=${PROBE}`, SOAK_LOOP_PROBE_FILE: probeFile }, core: 1 },
    );
  } catch (error) {
    await settle.stop();
    throw error;
  }
  const metricsText = async () => (await fetch(`${gateway.url}/metrics`)).text();
  const exits = new Map<TollgateProcess, ExitStatus>();
  for (const child of [gateway, settle]) void child.exited.then((status) => exits.set(child, status));
  const survived = (): Check => {
    const dead = [
      ['gateway', gateway],
      ['settlement', settle],
    ].filter(([, child]) => exits.has(child as TollgateProcess)) as Array<[string, TollgateProcess]>;
    const detail = dead.map(([name, child]) => {
      const log = child.logs().split('\n');
      const at = log.findIndex((line) => /error/i.test(line));
      return `${name} exited ${JSON.stringify(exits.get(child))}: ${log.slice(Math.max(0, at), at + 6).join(' | ')} (log ${child.logFile})`;
    });
    return check('gateway and settlement processes still running', dead.length === 0, detail.join('; '));
  };
  return {
    survived,
    gateway,
    settle,
    probeFile,
    ledgerUrl: options.ledgerUrl,
    metricsText,
    metric: async (name, labels = {}) => parseSample(await metricsText(), name, labels),
    stop: async () => {
      await gateway.stop('SIGTERM', 30_000);
      await settle.stop('SIGTERM', 30_000);
    },
  };
}

export interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

export function check(name: string, ok: boolean, detail = ''): Check {
  return { name, ok, detail };
}

/** Runs an assertion (chai or a throw) as a check. */
async function asserted(name: string, body: () => Promise<string | void>): Promise<Check> {
  try {
    return check(name, true, (await body()) ?? '');
  } catch (error) {
    return check(name, false, String((error as Error)?.message ?? error).split('\n').slice(0, 6).join(' '));
  }
}

export interface LedgerReport {
  checks: Check[];
  /** reservations by state/outcome: count and µcr charged. */
  states: Array<{ state: string; outcome: string | null; count: number; charged: number }>;
  reservations: number;
}

/**
 * After the traffic: every reservation ended (within `settleTimeoutMs`), none open past its TTL,
 * the journal invariants hold (audit() empty), one reservation per admitted request, and every
 * balance exact to the micro-credit from what the clients saw.
 */
export async function verifyLedger(options: {
  ledgerUrl: string;
  book: Book;
  accounts: Account[];
  initial: number;
  settleTimeoutMs: number;
  /** Admitted requests the clients cannot see (fail-open): checked by the caller instead. */
  skipBalances?: boolean;
}): Promise<LedgerReport> {
  const ledger: SqlLedger = await openPostgresLedger(options.ledgerUrl);
  const pool = new pg.Pool({ connectionString: options.ledgerUrl, max: 1 });
  pool.on('error', () => {});
  const checks: Check[] = [];
  try {
    const started = Date.now();
    checks.push(
      await asserted('every reservation ended', async () => {
        await waitUntilSettled(ledger, options.settleTimeoutMs);
        return `all settled ${((Date.now() - started) / 1000).toFixed(1)} s after the traffic`;
      }),
    );
    const { rows: stale } = await pool.query(`SELECT count(*)::int AS n FROM reservations WHERE state = 'open' AND expires_at < now()`);
    checks.push(check('no open reservation past its TTL', stale[0].n === 0, `${stale[0].n} open past TTL`));
    const findings = await ledger.audit();
    checks.push(check('journal invariants (audit() empty)', findings.length === 0, findings.length === 0 ? 'audit() = []' : JSON.stringify(findings.slice(0, 3))));
    const { rows: states } = await pool.query(
      `SELECT state, outcome, count(*)::int AS count, coalesce(sum(charged), 0)::bigint AS charged FROM reservations GROUP BY 1, 2 ORDER BY 1, 2`,
    );
    const reservations = states.reduce((n: number, row: { count: number }) => n + row.count, 0);
    if (!options.skipBalances) {
      const admitted = options.book.admitted();
      checks.push(check('one reservation per admitted request', reservations === admitted, `${reservations} reservations, ${admitted} requests got a 200`));
      const unexpected = options.book.unexpected();
      checks.push(
        check(
          'every request came to its expected result',
          unexpected.length === 0,
          unexpected.length === 0 ? `${options.book.sent.length} requests` : `${unexpected.length} unexpected, e.g. ${JSON.stringify(unexpected.slice(0, 3))}`,
        ),
      );
      checks.push(
        await asserted('balances exact to the micro-credit', async () => {
          await checkBalances(ledger, options.book.expectations(options.accounts), options.initial);
          return `${options.accounts.length} accounts`;
        }),
      );
    }
    return {
      checks,
      states: states.map((row: { state: string; outcome: string | null; count: number; charged: string }) => ({ ...row, charged: Number(row.charged) })),
      reservations,
    };
  } finally {
    await pool.end();
    await ledger.close();
  }
}

export function formatStates(states: LedgerReport['states']): string {
  return states.map((row) => `${row.state}/${row.outcome ?? '-'} ${row.count}`).join(', ');
}
