/**
 * The standalone server's billing tracer provider.
 *
 * It is Tollgate's own provider, not the process-wide one NodeSDK would register: its sampler is
 * AlwaysOn whatever OTEL_TRACES_SAMPLER says, because a billing span that a sampler drops is a
 * request settled at its reserved amount instead of its real cost.
 */
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';

export interface BillingTracing {
  provider: BasicTracerProvider;
  /** Exports what is queued and stops. */
  shutdown(): Promise<void>;
}

export function billingTracing(endpoint: string, token: string | undefined): BillingTracing {
  const exporter = new OTLPTraceExporter({
    url: endpoint,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const provider = new BasicTracerProvider({
    sampler: new AlwaysOnSampler(),
    resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: 'tollgate-gateway' }),
    spanProcessors: [
      new BatchSpanProcessor(exporter, {
        // A full queue drops spans: size it for minutes of traffic, not the default 2,048.
        maxQueueSize: 100_000,
        maxExportBatchSize: 1_000,
        scheduledDelayMillis: 200,
      }),
    ],
  });
  return { provider, shutdown: () => provider.shutdown() };
}
