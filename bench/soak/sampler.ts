/**
 * Samples a gateway process from outside while traffic runs: its RSS (/proc/PID/status VmRSS),
 * its open file descriptors (/proc/PID/fd), its event-loop lag as loop-probe.mjs measured it from
 * inside (per-second p99 and max, the worst second since the last sample), and the latency of
 * GET /healthz from this process (the outside view, which includes this process's own load).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';

export interface Sample {
  /** Seconds since the sampler started. */
  at: number;
  rssMb: number;
  fds: number;
  /** Worst per-second p99 / max event-loop delay inside the gateway since the last sample (ms). */
  loopP99Ms: number | undefined;
  loopMaxMs: number | undefined;
  /** GET /healthz round trip (ms), undefined when it failed. */
  healthzMs: number | undefined;
  /** The caller's counter (requests finished) at this sample. */
  count: number;
}

export interface Sampler {
  samples: Sample[];
  /** One sample now (also taken every interval). */
  sample(): Promise<Sample>;
  stop(): void;
}

export function rssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1] ?? NaN);
  return Math.round(kb / 102.4) / 10;
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

interface ProbeLine {
  t: number;
  p99: number;
  max: number;
}

interface HeapLine {
  t: number;
  gc: boolean;
  heapUsedMb: number;
  rssMb: number;
}

function lines(file: string | undefined): Array<ProbeLine | HeapLine> {
  if (file === undefined || !existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as ProbeLine | HeapLine);
}

/** loop-probe.mjs's per-second event-loop lag lines. */
export function probeLines(file: string | undefined): ProbeLine[] {
  return lines(file).filter((line): line is ProbeLine => !('gc' in line));
}

/**
 * The gateway's live heap: asks loop-probe.mjs (SIGUSR2) for a full GC and reads back heapUsed
 * after it (MB). Throws when no answer comes (probe not loaded, or no --expose-gc).
 */
export async function heapAfterGc(pid: number, file: string): Promise<number> {
  const before = lines(file).length;
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const answer = lines(file).slice(before).find((line): line is HeapLine => 'gc' in line);
    if (answer !== undefined) {
      if (!answer.gc) throw new Error('the gateway runs without --expose-gc');
      return answer.heapUsedMb;
    }
  }
  throw new Error('no answer from loop-probe.mjs');
}

function healthz(url: string, timeoutMs = 5000): Promise<number | undefined> {
  const started = performance.now();
  return new Promise((resolve) => {
    const req = http.get(`${url}/healthz`, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200 ? performance.now() - started : undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
  });
}

export function startSampler(options: {
  pid: number;
  url: string;
  probeFile?: string;
  intervalMs: number;
  count?: () => number;
}): Sampler {
  const started = Date.now();
  const samples: Sample[] = [];
  let lastProbe = Date.now();
  const sample = async (): Promise<Sample> => {
    const healthzMs = await healthz(options.url);
    const now = Date.now();
    const lines = probeLines(options.probeFile).filter((line) => line.t > lastProbe && line.t <= now);
    lastProbe = now;
    const worst = (field: 'p99' | 'max') => (lines.length > 0 ? Math.max(...lines.map((line) => line[field])) : undefined);
    const taken: Sample = {
      at: (now - started) / 1000,
      rssMb: rssMb(options.pid),
      fds: fdCount(options.pid),
      loopP99Ms: worst('p99'),
      loopMaxMs: worst('max'),
      healthzMs: healthzMs === undefined ? undefined : Math.round(healthzMs * 10) / 10,
      count: options.count?.() ?? 0,
    };
    samples.push(taken);
    return taken;
  };
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void sample()
      .catch(() => undefined)
      .finally(() => (busy = false));
  }, options.intervalMs);
  return { samples, sample, stop: () => clearInterval(timer) };
}

/** A fast RSS-only sampler (for peaks during a burst): every `intervalMs`, the highest seen. */
export function peakRss(pid: number, intervalMs = 100): { peak(): number; stop(): void } {
  let peak = 0;
  const take = () => {
    try {
      peak = Math.max(peak, rssMb(pid));
    } catch {
      // the process is gone
    }
  };
  take();
  const timer = setInterval(take, intervalMs);
  return { peak: () => peak, stop: () => clearInterval(timer) };
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
