/**
 * A PostgreSQL server of the soak's own: initdb into a temp dir, on a free port, with its socket
 * in that dir, so that it can be stopped and restarted mid-traffic without touching the machine's
 * shared server (other engineers' tests use the one on 5432). The Debian binaries
 * (/usr/lib/postgresql/<version>/bin, or PG_BIN); as root they run as the `postgres` user.
 * The server is stopped (immediate) and its directory removed when this process exits.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../test/support/otelcol.js';

export interface OwnPostgres {
  port: number;
  /** postgres://postgres@127.0.0.1:PORT/DATABASE */
  url(database: string): string;
  /** A new, empty database; returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** pg_ctl stop -m fast: clients are disconnected, open transactions roll back. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops the server and removes its directory. */
  destroy(): void;
}

function binDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  if (versions.length === 0) throw new Error(`no PostgreSQL binaries under ${root} (set PG_BIN)`);
  return path.join(root, versions[0]!, 'bin');
}

const asRoot = process.getuid?.() === 0;

const commandLine = (bin: string, args: string[]): [string, string[]] => (asRoot ? ['runuser', ['-u', 'postgres', '--', bin, ...args]] : [bin, args]);

function run(bin: string, args: string[]): void {
  const result = spawnSync(...commandLine(bin, args), { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${path.basename(bin)} ${args.join(' ')} failed (${result.status}):\n${result.stdout}${result.stderr}`);
}

/** The same without blocking this process's event loop (its clients and upstream run meanwhile). */
async function runAsync(bin: string, args: string[]): Promise<void> {
  await promisify(execFile)(...commandLine(bin, args));
}

export async function startOwnPostgres(): Promise<OwnPostgres> {
  const bin = binDir();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-soak-pg-'));
  if (asRoot) {
    const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, uid, gid);
  }
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  const port = await freePort();
  run(path.join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200`;
  const pgCtl = (...args: string[]) => run(path.join(bin, 'pg_ctl'), ['-D', data, ...args]);
  const startArgs = ['-D', data, '-l', log, '-o', options, '-w', '-t', '60', 'start'];
  let running = false;
  const stopNow = () => {
    if (!running) return;
    running = false;
    try {
      pgCtl('-m', 'immediate', '-w', 'stop');
    } catch {
      // already stopped
    }
  };
  const destroy = () => {
    stopNow();
    rmSync(dir, { recursive: true, force: true });
    process.off('exit', destroy);
  };
  process.on('exit', destroy);
  run(path.join(bin, 'pg_ctl'), startArgs);
  running = true;
  const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  return {
    port,
    url,
    async createDatabase(name) {
      const admin = new pg.Client({ connectionString: url('postgres') });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return url(name);
    },
    async stop() {
      await runAsync(path.join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop']);
      running = false;
    },
    async start() {
      await runAsync(path.join(bin, 'pg_ctl'), startArgs);
      running = true;
    },
    destroy,
  };
}
