/**
 * The standalone server's billing tracer provider.
 *
 * It is Tollgate's own provider, not the process-wide one NodeSDK would register: its sampler is
 * AlwaysOn whatever OTEL_TRACES_SAMPLER says, because a billing span that a sampler drops is a
 * request settled at its reserved amount instead of its real cost.
 */
import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { Counter, type Registry } from 'prom-client';
import { METRIC_DROPPED_SPANS } from '../plugin/semconv.js';
import { throttledLogger } from '../plugin/throttled-log.js';

export interface BillingTracing {
  provider: BasicTracerProvider;
  /** Exports what is queued and stops. */
  shutdown(): Promise<void>;
}

/**
 * The OTLP/HTTP traces URL for an endpoint given as a base URL (`http://collector:4318`, the OTLP
 * convention) or as the full URL (`…/v1/traces`).
 */
export function tracesUrl(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.pathname === '/' || url.pathname === '') url.pathname = '/v1/traces';
  return url.toString();
}

export interface BillingTracingOptions {
  /** OTLP/HTTP endpoint: a base URL or the full traces URL. */
  endpoint: string;
  /** Bearer token for the endpoint (a Collector's, or in-process settlement's). */
  token: string | undefined;
  /**
   * How long one export may take, retries included (the exporter retries 429/502/503/504 and
   * network errors with back-off): long enough to ride out a Collector restart.
   */
  timeoutMs: number;
  /** Where tollgate_billing_spans_dropped_total goes. */
  registry: Registry;
  logger: (message: string) => void;
}

export function billingTracing({ endpoint, token, timeoutMs, registry, logger }: BillingTracingOptions): BillingTracing {
  const exporter = new OTLPTraceExporter({
    url: tracesUrl(endpoint),
    headers: token ? { authorization: `Bearer ${token}` } : {},
    timeoutMillis: timeoutMs,
  });
  const provider = new BasicTracerProvider({
    sampler: new AlwaysOnSampler(),
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'tollgate-gateway' }),
    spanProcessors: [
      new BatchSpanProcessor(countingFailures(exporter, registry, logger), {
        // A full queue drops spans: size it for minutes of traffic, not the default 2,048.
        maxQueueSize: 100_000,
        // Spans leave the heap quickly. A span that waits in the queue outlives the young
        // generation's collections, and V8 copies it to the old generation, whose collections cost
        // far more. The queue is exported when 64 spans wait (or after 50 ms at low load; the
        // SDK's defaults are 512 and 5 s): under load a span waits only while 64 requests finish,
        // and 64 streamed requests allocate about 7 MB (~115 KB each in bench/proxy.ts), less
        // than the young generation fills between two collections (~14 MB here).
        // Measured (bench/proxy.ts's stream and load, PostgreSQL ledger, the gateway alone on
        // its core, --trace-gc-nvp, two runs each of six 5 s loads): 1,000 spans and 50 ms
        // promoted 75-116 KB per scavenge in one run and 1.5 MB in the other, CPU 254-306 µs per
        // request; 64 spans and 50 ms, 3-19 KB, 244-277 µs.
        // One export is in flight at a time, so a backlog (a Collector restarting) drains at 64
        // spans per round trip: 64,000/s at 1 ms, 6,400/s at 10 ms.
        maxExportBatchSize: 64,
        scheduledDelayMillis: 50,
      }),
    ],
  });
  return { provider, shutdown: () => provider.shutdown() };
}

/**
 * The SDK reports a failed export only to its global error handler, silent by default: count
 * the spans it gave up on, and say so in the log (at most every 10 s). Their reservations are
 * settled by the sweeper, at the reserved amount.
 */
function countingFailures(exporter: SpanExporter, registry: Registry, logger: (message: string) => void): SpanExporter {
  const dropped = new Counter({
    name: METRIC_DROPPED_SPANS,
    help: 'Billing spans the exporter gave up delivering; their reservations settle through the sweeper.',
    registers: [registry],
  });
  const warn = throttledLogger(logger, 10_000);
  return {
    export: (spans, done) =>
      exporter.export(spans, (result) => {
        if (result.code !== ExportResultCode.SUCCESS) {
          dropped.inc(spans.length);
          warn(`tollgate: ${spans.length} billing spans could not be exported (${result.error?.message ?? 'unknown error'}); the sweeper will settle their reservations at the reserved amount`);
        }
        done(result);
      }),
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}
