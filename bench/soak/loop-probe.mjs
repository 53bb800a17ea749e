/**
 * Preloaded into the gateway process by the soak (NODE_OPTIONS="--expose-gc --import=…/loop-probe.mjs"):
 * measurement only, it changes nothing in the gateway and its timer does not keep it alive.
 *
 * - Event-loop lag: the gateway's /metrics has none (cli/serve.ts does not call prom-client's
 *   collectDefaultMetrics), so this measures it from inside with perf_hooks'
 *   monitorEventLoopDelay and appends one JSON line per second to $SOAK_LOOP_PROBE_FILE:
 *   {"t": epoch ms, "p50", "p99", "max", "mean"} in milliseconds over that second.
 * - Live heap: on SIGUSR2 it runs a full garbage collection (when --expose-gc is on) and appends
 *   {"t", "gc": true, "heapUsedMb", "rssMb"}: what the heap really holds, without the garbage a
 *   peak leaves behind until V8 gets round to collecting it.
 */
import { appendFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

const file = process.env.SOAK_LOOP_PROBE_FILE;
if (file) {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  const ms = (ns) => Math.round(ns / 1e4) / 100;
  const mb = (bytes) => Math.round(bytes / 1024 / 102.4) / 10;
  setInterval(() => {
    const line = { t: Date.now(), p50: ms(histogram.percentile(50)), p99: ms(histogram.percentile(99)), max: ms(histogram.max), mean: ms(histogram.mean) };
    histogram.reset();
    appendFileSync(file, `${JSON.stringify(line)}\n`);
  }, 1000).unref();
  process.on('SIGUSR2', () => {
    globalThis.gc?.();
    globalThis.gc?.();
    const { heapUsed, rss } = process.memoryUsage();
    appendFileSync(file, `${JSON.stringify({ t: Date.now(), gc: typeof globalThis.gc === 'function', heapUsedMb: mb(heapUsed), rssMb: mb(rss) })}\n`);
  });
}
