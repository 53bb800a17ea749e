/**
 * Spans the way the gateway sends them: the real OpenTelemetry JS SDK and OTLP exporters
 * (protobuf or JSON, optionally gzipped) posting to a real server on loopback.
 */
import { diag, DiagLogLevel, type Attributes } from '@opentelemetry/api';
import type { ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter as JsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  SimpleSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { OtlpEncoding } from '../../collector/otlp.js';
import {
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_TOLLGATE_ACCOUNT_ID,
  ATTR_TOLLGATE_OUTCOME,
  ATTR_TOLLGATE_PRICING_VERSION,
  ATTR_TOLLGATE_RESERVATION_AMOUNT,
  ATTR_TOLLGATE_RESERVATION_ID,
  ATTR_TOLLGATE_USAGE_SOURCE,
} from '../../plugin/semconv.js';

export interface Reservation {
  reservationId: string;
  accountId: string;
  /** Reserved micro-credits. */
  amount: number;
  pricingVersion: string;
}

/**
 * The attributes the gateway puts on a billing span: a completed gpt-4o chat request with
 * reported usage of 1000 input and 200 output tokens. An override of undefined leaves the
 * attribute out, as the gateway does with a count the provider did not report.
 */
export function billingAttributes(reservation: Reservation, overrides: Attributes = {}): Attributes {
  const attributes: Attributes = {
    [ATTR_TOLLGATE_RESERVATION_ID]: reservation.reservationId,
    [ATTR_TOLLGATE_ACCOUNT_ID]: reservation.accountId,
    [ATTR_TOLLGATE_RESERVATION_AMOUNT]: reservation.amount,
    [ATTR_TOLLGATE_OUTCOME]: 'completed',
    [ATTR_TOLLGATE_USAGE_SOURCE]: 'reported',
    [ATTR_TOLLGATE_PRICING_VERSION]: reservation.pricingVersion,
    [ATTR_GEN_AI_PROVIDER_NAME]: 'openai',
    [ATTR_GEN_AI_OPERATION_NAME]: 'chat',
    [ATTR_GEN_AI_REQUEST_MODEL]: 'gpt-4o',
    [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: 1000,
    [ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]: 200,
    [ATTR_HTTP_RESPONSE_STATUS_CODE]: 200,
    ...overrides,
  };
  return Object.fromEntries(Object.entries(attributes).filter(([, value]) => value !== undefined));
}

export interface ExportOptions {
  token?: string;
  gzip?: boolean;
  /** 'simple' (default): one request per span; 'batch': all the spans in one request. */
  processor?: 'simple' | 'batch';
  /** When each span ends (default: now). */
  endTime?: Date;
}

export interface ExportRun {
  results: ExportResult[];
  /** What the exporters logged through the OpenTelemetry diag API (e.g. a partial success). */
  warnings: string[];
}

/** Ends one span per attribute set and exports them; resolves when every export finished. */
export async function exportSpans(
  url: string,
  encoding: OtlpEncoding,
  spans: Attributes[],
  options: ExportOptions = {},
): Promise<ExportRun> {
  const config = {
    url,
    headers: options.token === undefined ? {} : ({ authorization: `Bearer ${options.token}` } as Record<string, string>),
    // The CompressionAlgorithm enum's values; the enum lives in a transitive package.
    compression: (options.gzip ? 'gzip' : 'none') as never,
  };
  const exporter = encoding === 'protobuf' ? new ProtoExporter(config) : new JsonExporter(config);
  const results: ExportResult[] = [];
  // Records each export's result on its way back to the span processor.
  const recording: SpanExporter = {
    export: (batch, done) =>
      exporter.export(batch, (result) => {
        results.push(result);
        done(result);
      }),
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush(),
  };
  const processor = options.processor === 'batch' ? new BatchSpanProcessor(recording, { maxExportBatchSize: 4096 }) : new SimpleSpanProcessor(recording);
  const provider = new BasicTracerProvider({ spanProcessors: [processor] });
  const tracer = provider.getTracer('tollgate-test');
  const warnings: string[] = [];
  const log = (...args: unknown[]) => warnings.push(args.map(String).join(' '));
  diag.setLogger({ error: log, warn: log, info: () => {}, debug: () => {}, verbose: () => {} }, DiagLogLevel.WARN);
  try {
    // Started when they end: the SDK clamps an end time before the start.
    const at = options.endTime;
    for (const attributes of spans) tracer.startSpan('chat', { attributes, startTime: at }).end(at);
    // A failed export also rejects the flush; it is in `results` already, for the test to judge.
    await provider.forceFlush().catch(() => undefined);
    await provider.shutdown();
  } finally {
    diag.disable();
  }
  return { results, warnings };
}

export async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
