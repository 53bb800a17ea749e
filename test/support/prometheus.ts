/**
 * A real Prometheus for end-to-end tests: Debian's `prometheus` binary on a free loopback port,
 * with a generated config (the scrape targets given, scrape and rule evaluation every second),
 * the rule files given (e.g. dashboards/alerts.yaml), and a temp TSDB directory.
 *
 * startPrometheus() resolves once /-/ready answers 200; its query()/queryRange()/alerts()/targets()
 * are dashboards/prometheus-client.ts over its HTTP API. prometheusBinary() is undefined when the
 * binary is missing, so that suites can skip with a message (skipWithoutPrometheus) instead of
 * failing; CI installs the package.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { prometheusClient, type PrometheusClient } from '../../dashboards/prometheus-client.js';
import { freePort, healthy, tail } from './otelcol.js';

export interface ScrapeTarget {
  /** The `job` label: dashboards/sources.ts SCRAPE_JOBS names the ones the dashboards select on. */
  job: string;
  /** The full scrape URL, e.g. http://127.0.0.1:1234/metrics. Several targets may share a job. */
  url: string;
}

export interface StartPrometheusOptions {
  targets: ScrapeTarget[];
  /** Rule files (recording and alerting) to load. */
  ruleFiles?: string[];
  /** Scrape interval and rule evaluation interval. Default 1s. */
  interval?: string;
  /** How long to wait for /-/ready (default 30 s). */
  readyTimeoutMs?: number;
}

export interface RunningPrometheus extends PrometheusClient {
  /** The generated prometheus.yml. */
  configFile: string;
  /** Resolves once every target has been scraped successfully at least once. */
  waitForTargetsUp(timeoutMs?: number): Promise<void>;
  /** The log so far. */
  logs(): string;
  /** Stops the process (SIGTERM, then SIGKILL after 10 s) and removes its temp directory. */
  stop(): Promise<void>;
}

/** Path of the prometheus binary (PROMETHEUS_BIN overrides), or undefined when not installed. */
export function prometheusBinary(): string | undefined {
  const fromEnv = process.env.PROMETHEUS_BIN;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  const found = spawnSync('sh', ['-c', 'command -v prometheus'], { encoding: 'utf8' });
  const bin = found.status === 0 ? found.stdout.trim() : '';
  return bin && existsSync(bin) ? bin : undefined;
}

/**
 * In a mocha hook or test: skips it, saying why, when Prometheus is not installed — or fails, when
 * TOLLGATE_REQUIRE_PROMETHEUS is set (CI's Prometheus step, which installed it, must not skip).
 */
export function skipWithoutPrometheus(context: Mocha.Context): void {
  if (prometheusBinary()) return;
  if (process.env.TOLLGATE_REQUIRE_PROMETHEUS) {
    throw new Error('TOLLGATE_REQUIRE_PROMETHEUS is set but the prometheus binary is missing');
  }
  console.log('    (skipped: the prometheus binary is missing; apt-get install prometheus, or set PROMETHEUS_BIN)');
  context.skip();
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

class PortInUseError extends Error {}

export async function startPrometheus(opts: StartPrometheusOptions): Promise<RunningPrometheus> {
  const bin = prometheusBinary();
  if (!bin) throw new Error('the prometheus binary is missing (apt-get install prometheus, or set PROMETHEUS_BIN)');
  // A port picked free can be taken before Prometheus binds it: retry with a new one.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(bin, opts);
    } catch (error) {
      if (attempt < 3 && error instanceof PortInUseError) continue;
      throw error;
    }
  }
}

function scrapeConfigs(targets: ScrapeTarget[], interval: string) {
  const jobs = new Map<string, URL[]>();
  for (const { job, url } of targets) jobs.set(job, [...(jobs.get(job) ?? []), new URL(url)]);
  return [...jobs].map(([job, urls]) => {
    const [first] = urls;
    // One scrape config per job: its targets share a scheme and a metrics path.
    if (urls.some((url) => url.protocol !== first!.protocol || url.pathname !== first!.pathname)) {
      throw new Error(`targets of job ${job} differ in scheme or path: ${urls.join(', ')}`);
    }
    return {
      job_name: job,
      scrape_interval: interval,
      scrape_timeout: interval,
      scheme: first!.protocol.replace(':', ''),
      metrics_path: first!.pathname,
      static_configs: [{ targets: urls.map((url) => url.host) }],
    };
  });
}

async function startOnce(bin: string, opts: StartPrometheusOptions): Promise<RunningPrometheus> {
  const interval = opts.interval ?? '1s';
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-prometheus-'));
  const configFile = path.join(workDir, 'prometheus.yml');
  const logFile = path.join(workDir, 'prometheus.log');
  writeFileSync(
    configFile,
    stringify({
      global: { scrape_interval: interval, evaluation_interval: interval },
      rule_files: (opts.ruleFiles ?? []).map((file) => path.resolve(file)),
      scrape_configs: scrapeConfigs(opts.targets, interval),
    }),
  );
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = createWriteStream(logFile);
  await once(log, 'open');
  const child = spawn(
    bin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${path.join(workDir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      // The console templates of the Debian package are not needed, nor is a long retention.
      '--storage.tsdb.retention.time=1d',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  live.add(child);
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      live.delete(child);
      resolve();
    }),
  );
  Promise.all([once(child.stdout!, 'close'), once(child.stderr!, 'close')]).then(
    () => log.end(),
    () => log.end(),
  );
  const logs = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  let dead = false;
  void exited.then(() => (dead = true));

  const stop = async () => {
    if (!dead) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(workDir, { recursive: true, force: true });
  };

  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  for (;;) {
    if (dead) {
      await new Promise((resolve) => setTimeout(resolve, 50)); // let the log flush
      const text = logs();
      rmSync(workDir, { recursive: true, force: true });
      if (/address already in use/.test(text)) throw new PortInUseError(tail(text));
      throw new Error(`prometheus exited during startup; its log:\n${tail(text)}`);
    }
    if (await healthy(`${url}/-/ready`)) break;
    if (Date.now() > deadline) {
      const text = logs();
      await stop();
      throw new Error(`prometheus not ready after ${opts.readyTimeoutMs ?? 30_000} ms; its log:\n${tail(text)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const client = prometheusClient(url);
  return {
    ...client,
    configFile,
    waitForTargetsUp: async (timeoutMs = 15_000) => {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const all = await client.targets();
        if (all.length > 0 && all.every((t) => t.health === 'up')) return;
        if (Date.now() > until) throw new Error(`scrape targets not all up: ${JSON.stringify(all)}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    },
    logs,
    stop,
  };
}

