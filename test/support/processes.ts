/**
 * Tollgate's own command line (`cli/main.ts serve | settle`) as child processes, for the
 * end-to-end tests and benchmarks of the gateway → Collector → settlement path: the very binary
 * an operator runs, started with tsx from the source tree.
 *
 * startTollgate() resolves once the process printed its "listening on URL" line; stop() sends a
 * signal (SIGTERM: the CLI's graceful shutdown, which flushes the billing span exporter) and
 * SIGKILLs after a timeout. Children still alive when the test process exits are killed, so a
 * failed run never leaves servers holding ports and database connections.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import type { ExitStatus } from './otelcol.js';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const cliMain = path.join(repoRoot, 'cli', 'main.ts');

/**
 * A postgres:// URL that puts the ledger in a test schema (createSchema() in
 * test/ledger/databases.ts): a child process only takes a URL, so the pool's search_path option
 * travels as the URL's `options` parameter, which pg reads back.
 */
export function ledgerUrl(databaseUrl: string, config: pg.PoolConfig): string {
  const url = new URL(databaseUrl);
  if (config.options) url.searchParams.set('options', config.options);
  return url.toString();
}

export interface TollgateProcess {
  pid: number;
  /** The base URL the process printed it listens on, e.g. http://127.0.0.1:41234. */
  url: string;
  /** stdout + stderr of the process. */
  logFile: string;
  logs(): string;
  exited: Promise<ExitStatus>;
  /** Sends `signal` (default SIGTERM), waits up to `timeoutMs` (default 30 s), then SIGKILLs. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitStatus>;
  /** Removes the log's temp dir (after stop). */
  cleanup(): void;
}

export interface StartTollgateOptions {
  /** Added to the environment; TOLLGATE_*, OTEL_*, DATABASE_URL and provider keys are never inherited. */
  env?: Record<string, string>;
  /** Pin the process to this CPU core with taskset (benchmarks), when taskset exists. */
  core?: number;
  readyTimeoutMs?: number;
}

// Settings from the developer's shell would change what the test measures.
const scrubbed = /^(TOLLGATE_|OTEL_|OPENAI_|ANTHROPIC_|DATABASE_URL$)/;
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

let tasksetChecked: boolean | undefined;
export function hasTaskset(): boolean {
  tasksetChecked ??= spawnSync('taskset', ['--version']).status === 0;
  return tasksetChecked;
}

export async function startTollgate(
  command: 'serve' | 'settle',
  args: string[],
  options: StartTollgateOptions = {},
): Promise<TollgateProcess> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), `tollgate-${command}-`));
  const logFile = path.join(workDir, `${command}.log`);
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(process.env)) if (value !== undefined && !scrubbed.test(name)) env[name] = value;
  Object.assign(env, options.env);

  const argv = [process.execPath, '--import', 'tsx', cliMain, command, ...args];
  const pinned = options.core !== undefined && hasTaskset();
  const child = spawn(pinned ? 'taskset' : argv[0]!, pinned ? ['-c', String(options.core), ...argv] : argv.slice(1), {
    cwd: repoRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const exited = new Promise<ExitStatus>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    }),
  );
  const log = createWriteStream(logFile);
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  void Promise.all([once(child.stdout!, 'close'), once(child.stderr!, 'close')]).finally(() => log.end());
  const logs = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<ExitStatus> => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    return exited.finally(() => clearTimeout(timer));
  };

  // Ready when the CLI prints where it listens (both commands print "listening on URL").
  let output = '';
  const ready = new Promise<string>((resolve) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/[^\s/]+)/.exec(output);
      if (match) resolve(match[1]!);
    });
  });
  const timeoutMs = options.readyTimeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  const failed = Promise.race([
    exited.then((status) => `exited during startup (${JSON.stringify(status)})`),
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve(`not ready after ${timeoutMs} ms`), timeoutMs))),
  ]);
  const first = await Promise.race([ready.then((url) => ({ url })), failed.then((reason) => ({ reason }))]);
  clearTimeout(timer);
  if ('reason' in first) {
    await stop('SIGKILL');
    throw new Error(`tollgate ${command} ${first.reason}; log ${logFile}:\n${logs().split('\n').slice(-30).join('\n')}`);
  }
  return {
    pid: child.pid!,
    url: first.url,
    logFile,
    logs,
    exited,
    stop,
    cleanup: () => rmSync(workDir, { recursive: true, force: true }),
  };
}
