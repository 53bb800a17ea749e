/**
 * Test harness for Tollgate's OpenTelemetry Collector distribution (collector/otelcol/).
 *
 * startCollector() runs the real `otelcol-tollgate` binary with a config (default: the repo's
 * otel-collector.yaml) on free loopback ports and a temp storage dir, and resolves once the
 * health_check extension answers 200 — i.e. every pipeline has started. Everything the config
 * reads from `${env:…}` gets a test default here; `env` overrides any of them.
 *
 * The binary is built by collector/otelcol/build.sh; collectorBinary() is undefined until then,
 * so suites can skip with a clear message instead of failing on machines without Go.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The repo's Collector config, the one platform teams deploy. */
export const defaultCollectorConfig = path.join(repoRoot, 'otel-collector.yaml');

/** Where build.sh puts the binary. */
export const collectorBinaryPath = path.join(repoRoot, 'collector', 'otelcol', '_build', 'otelcol-tollgate');

/** Path of the built otelcol-tollgate binary (OTELCOL_TOLLGATE_BIN overrides), or undefined when not built. */
export function collectorBinary(): string | undefined {
  const p = process.env.OTELCOL_TOLLGATE_BIN || collectorBinaryPath;
  return existsSync(p) ? p : undefined;
}

/** A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it). */
export async function freePort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const { port } = srv.address() as net.AddressInfo;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

export interface StartCollectorOptions {
  /** Values for the config's `${env:…}`; override the harness defaults. `undefined` unsets one. */
  env?: Record<string, string | undefined>;
  /** Config file; default: the repo's otel-collector.yaml. */
  configPath?: string;
  /** Persistent queue directory; default: a fresh temp dir. Pass a previous run's to restart on it. */
  storageDir?: string;
  /** How long to wait for health_check to report healthy (default 30 s). */
  readyTimeoutMs?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface RunningCollector {
  pid: number;
  /** OTLP/HTTP base URL, e.g. http://127.0.0.1:41234 (append /v1/traces). */
  otlpEndpoint: string;
  /** OTLP/gRPC address host:port. */
  otlpGrpcEndpoint: string;
  /** health_check URL. */
  healthUrl: string;
  /** Scrape URL of the span-derived metrics (prometheus exporter). */
  prometheusUrl: string;
  /** Scrape URL of the Collector's own metrics (otelcol_*). */
  telemetryUrl: string;
  /** Persistent queue directory (reuse it to restart on the same queue). */
  storageDir: string;
  /** File with the Collector's stdout+stderr. */
  logFile: string;
  /** The full env the Collector was started with. */
  env: Record<string, string>;
  /** Resolves when the process has exited. */
  exited: Promise<ExitStatus>;
  /** Graceful stop: send `signal` (default SIGTERM), wait up to timeoutMs (default 15 s), then SIGKILL. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitStatus>;
  /** SIGKILL: a crash, as far as the Collector is concerned. */
  kill(): Promise<ExitStatus>;
  /** The log so far. */
  logs(): string;
  /** Scrape telemetryUrl and return the value of a sample, e.g. metric('otelcol_exporter_queue_size', {exporter: 'otlp_http/settlement'}). */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
  /** Remove the temp dir the harness created for logs and (when not given) storage. Call after stop/kill. */
  cleanup(): void;
}

// Children still running when the test process exits (mocha --exit, a crash) are killed, so a
// failed run never leaves Collectors holding ports and bbolt locks.
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Env the harness never passes through from the developer's shell: it would change the test. */
const scrubbed = /^(TOLLGATE_|OTEL_)/;

export async function startCollector(opts: StartCollectorOptions = {}): Promise<RunningCollector> {
  const bin = collectorBinary();
  if (!bin) throw new Error(`otelcol-tollgate is not built (${collectorBinaryPath}); run collector/otelcol/build.sh`);
  // A freshly picked port can be taken by someone else before the Collector binds it; that
  // shows up as "address already in use" — try again with new ports.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(bin, opts);
    } catch (err) {
      if (attempt < 3 && err instanceof PortInUseError) continue;
      throw err;
    }
  }
}

class PortInUseError extends Error {}

async function startOnce(bin: string, opts: StartCollectorOptions): Promise<RunningCollector> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'tollgate-otelcol-'));
  const storageDir = opts.storageDir ?? path.join(workDir, 'storage');
  const logFile = path.join(workDir, 'collector.log');
  const [httpPort, grpcPort, healthPort, promPort, telemetryPort] = await Promise.all(
    Array.from({ length: 5 }, () => freePort()),
  );

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !scrubbed.test(k)) env[k] = v;
  Object.assign(env, {
    TOLLGATE_OTLP_HTTP_ENDPOINT: `127.0.0.1:${httpPort}`,
    TOLLGATE_OTLP_GRPC_ENDPOINT: `127.0.0.1:${grpcPort}`,
    TOLLGATE_COLLECTOR_HEALTH_ENDPOINT: `127.0.0.1:${healthPort}`,
    TOLLGATE_COLLECTOR_PROMETHEUS_ENDPOINT: `127.0.0.1:${promPort}`,
    TOLLGATE_COLLECTOR_TELEMETRY_HOST: '127.0.0.1',
    TOLLGATE_COLLECTOR_TELEMETRY_PORT: String(telemetryPort),
    TOLLGATE_COLLECTOR_STORAGE_DIR: storageDir,
    // Required by otel-collector.yaml; tests that care set their own.
    TOLLGATE_COLLECTOR_TOKEN: 'test-collector-token',
    TOLLGATE_SETTLEMENT_TOKEN: 'test-settlement-token',
    TOLLGATE_SETTLEMENT_ENDPOINT: 'http://127.0.0.1:9', // discard port: nothing listens
    // Tests wait for redelivery: don't back off to the production 30 s.
    TOLLGATE_SETTLEMENT_RETRY_MAX_INTERVAL: '1s',
  });
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }

  const log: WriteStream = createWriteStream(logFile);
  await once(log, 'open');
  const child = spawn(bin, [`--config=${opts.configPath ?? defaultCollectorConfig}`], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.stdout!.pipe(log, { end: false });
  child.stderr!.pipe(log, { end: false });
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  // Close the log once both pipes drained (after exit), so logs() sees the last lines.
  Promise.all([once(child.stdout!, 'close'), once(child.stderr!, 'close')]).then(
    () => log.end(),
    () => log.end(),
  );
  if (child.pid === undefined) {
    await once(child, 'error').catch(() => undefined);
    throw new Error(`could not spawn ${bin}`);
  }

  const logs = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
  const healthUrl = `http://127.0.0.1:${healthPort}/`;
  const telemetryUrl = `http://127.0.0.1:${telemetryPort}/metrics`;

  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<ExitStatus> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    }
    return exited;
  };

  // Wait until healthy, the process exits, or the deadline passes.
  const deadline = Date.now() + (opts.readyTimeoutMs ?? 30_000);
  let early: ExitStatus | undefined;
  void exited.then((s) => (early = s));
  for (;;) {
    if (early) {
      await new Promise((r) => setTimeout(r, 50)); // let the log flush
      const text = logs();
      if (/address already in use/.test(text)) {
        rmSync(workDir, { recursive: true, force: true }); // nothing worth keeping: we retry
        throw new PortInUseError(`port clash starting the Collector:\n${tail(text)}`);
      }
      throw new Error(`otelcol-tollgate exited during startup (${JSON.stringify(early)}); log ${logFile}:\n${tail(text)}`);
    }
    if (await healthy(healthUrl)) break;
    if (Date.now() > deadline) {
      await stop('SIGKILL');
      throw new Error(`otelcol-tollgate not healthy after ${opts.readyTimeoutMs ?? 30_000} ms; log ${logFile}:\n${tail(logs())}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  return {
    pid: child.pid,
    otlpEndpoint: `http://127.0.0.1:${httpPort}`,
    otlpGrpcEndpoint: `127.0.0.1:${grpcPort}`,
    healthUrl,
    prometheusUrl: `http://127.0.0.1:${promPort}/metrics`,
    telemetryUrl,
    storageDir,
    logFile,
    env,
    exited,
    stop,
    kill: () => stop('SIGKILL'),
    logs,
    metric: async (name, labels = {}) => parseSample(await (await fetch(telemetryUrl)).text(), name, labels),
    cleanup: () => rmSync(workDir, { recursive: true, force: true }),
  };
}

/** True once `url` answers 200 (a health or readiness endpoint); false while nothing listens. */
export async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
    await res.arrayBuffer();
    return res.status === 200;
  } catch {
    return false; // not listening yet
  }
}

/** The last lines of a log, for failure messages. */
export function tail(text: string, lines = 40): string {
  return text.split('\n').slice(-lines).join('\n');
}

/** Value of the first sample of `name` whose labels include `labels`, in Prometheus text format. */
export function parseSample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[l[1]!] = l[2]!;
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

// --- OTLP decoding, just enough to see which spans a request carried ---

// The subset of opentelemetry/proto/collector/trace/v1 + trace/v1 + common/v1 that tests need;
// protobuf skips the fields not declared here. Field numbers are OTLP's.
const otlpSubset = protobuf.parse(`
syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { repeated Span spans = 2; }
message Span { bytes trace_id = 1; bytes span_id = 2; string name = 5; repeated KeyValue attributes = 9; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; }
}
`).root.lookupType('ExportTraceServiceRequest');

export interface DecodedSpan {
  name: string;
  traceId: string;
  spanId: string;
  attributes: Record<string, string | number | boolean>;
  resource: Record<string, string | number | boolean>;
}

/** Decode an OTLP/protobuf ExportTraceServiceRequest body (already decompressed) into flat spans. */
export function decodeTraceRequest(body: Uint8Array): DecodedSpan[] {
  // No `defaults`: absent repeated fields stay undefined (handled below) and unset oneof
  // members stay absent instead of turning into ''/0/false.
  const msg = otlpSubset.toObject(otlpSubset.decode(body), { longs: Number, bytes: String }) as {
    resourceSpans?: {
      resource?: { attributes?: KV[] };
      scopeSpans?: { spans?: { name?: string; traceId?: string; spanId?: string; attributes?: KV[] }[] }[];
    }[];
  };
  const hex = (b64 = '') => Buffer.from(b64, 'base64').toString('hex');
  const out: DecodedSpan[] = [];
  for (const rs of msg.resourceSpans ?? []) {
    const resource = kvs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? [])
      for (const s of ss.spans ?? [])
        out.push({
          name: s.name ?? '',
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          attributes: kvs(s.attributes),
          resource,
        });
  }
  return out;
}

interface KV {
  key: string;
  value?: { stringValue?: string; boolValue?: boolean; intValue?: number; doubleValue?: number };
}

function kvs(list: KV[] = []): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const { key, value } of list) {
    const v = value?.stringValue ?? value?.intValue ?? value?.doubleValue ?? value?.boolValue;
    if (v !== undefined) out[key] = v;
  }
  return out;
}
