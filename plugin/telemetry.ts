/**
 * The billing span and metric updates, behind a guard: telemetry never breaks the request it
 * observes. Whatever a span or metric call throws is counted and logged once, then ignored.
 */
import { context, SpanKind, SpanStatusCode, trace, type Attributes, type Span, type Tracer } from '@opentelemetry/api';
import type { GatewayMetrics } from './metrics.js';
import {
  ATTR_GEN_AI_OPERATION_NAME,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_RESPONSE_ID,
  ATTR_GEN_AI_RESPONSE_MODEL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_TOLLGATE_ACCOUNT_ID,
  ATTR_TOLLGATE_OUTCOME,
  ATTR_TOLLGATE_PRICING_VERSION,
  ATTR_TOLLGATE_RESERVATION_AMOUNT,
  ATTR_TOLLGATE_RESERVATION_ID,
  ATTR_TOLLGATE_SIGNATURE,
  ATTR_TOLLGATE_SIGNATURE_KEY_ID,
  ATTR_TOLLGATE_USAGE_SOURCE,
  USAGE_ATTRIBUTES,
} from './semconv.js';
import { signature, type SigningKey } from './signing.js';
import type { OutcomeRecord } from './types.js';

/** A started billing span and the attributes it started with (the API cannot read them back). */
export interface BillingSpan {
  span: Span;
  attributes: Attributes;
}

const TRACER_NAME = 'tollgate';

export interface SpanStart {
  reservationId: string;
  accountId: string;
  provider: string;
  operation: string;
  requestModel: string;
  amount: number;
  pricingVersion: string;
  startTime: number;
}

export class Telemetry {
  private readonly tracer: Tracer;
  private warned = false;

  constructor(
    tracerProvider: { getTracer(name: string): Tracer },
    readonly metrics: GatewayMetrics,
    private readonly logger: (message: string) => void,
    private readonly signingKey: SigningKey | undefined,
  ) {
    this.tracer = tracerProvider.getTracer(TRACER_NAME);
  }

  /** Runs a telemetry call; a throw is counted and logged once, never raised. */
  guard(call: () => void): void {
    try {
      call();
    } catch (error) {
      try {
        this.metrics.telemetryErrors.inc();
      } catch {
        // The counter itself failing leaves only the log line.
      }
      if (!this.warned) {
        this.warned = true;
        this.logger(`tollgate: telemetry error (the request went on): ${(error as Error)?.message ?? error}`);
      }
    }
  }

  /**
   * Starts the billing span as a ROOT span linked to the caller's active span: the application's
   * sampler decides about its own trace, never about a billing span (billing spans must not be
   * sampled out; give Tollgate an always-on tracer provider).
   */
  startSpan(start: SpanStart): BillingSpan | undefined {
    let billing: BillingSpan | undefined;
    this.guard(() => {
      const parent = trace.getSpanContext(context.active());
      const attributes: Attributes = {
        [ATTR_GEN_AI_PROVIDER_NAME]: start.provider,
        [ATTR_GEN_AI_OPERATION_NAME]: start.operation,
        [ATTR_GEN_AI_REQUEST_MODEL]: start.requestModel,
        [ATTR_TOLLGATE_RESERVATION_ID]: start.reservationId,
        [ATTR_TOLLGATE_ACCOUNT_ID]: start.accountId,
        [ATTR_TOLLGATE_RESERVATION_AMOUNT]: start.amount,
        [ATTR_TOLLGATE_PRICING_VERSION]: start.pricingVersion,
      };
      const span = this.tracer.startSpan(`${start.operation} ${start.requestModel}`, {
        kind: SpanKind.CLIENT,
        root: true,
        links: parent ? [{ context: parent }] : [],
        startTime: start.startTime,
        attributes,
      });
      if (!span.isRecording()) this.metrics.unrecordedSpans.inc();
      billing = { span, attributes };
    });
    return billing;
  }

  endSpan(billing: BillingSpan | undefined, record: OutcomeRecord, responseId: string | undefined): void {
    if (billing === undefined) return;
    this.guard(() => {
      const attributes: Attributes = {
        [ATTR_TOLLGATE_OUTCOME]: record.outcome,
        [ATTR_TOLLGATE_USAGE_SOURCE]: record.usageSource,
      };
      if (record.status !== undefined) attributes[ATTR_HTTP_RESPONSE_STATUS_CODE] = record.status;
      if (record.responseModel !== undefined) attributes[ATTR_GEN_AI_RESPONSE_MODEL] = record.responseModel;
      if (responseId !== undefined) attributes[ATTR_GEN_AI_RESPONSE_ID] = responseId;
      for (const [field, name] of USAGE_ATTRIBUTES) {
        const value = record.usage?.[field];
        if (value !== undefined) attributes[name] = value;
      }
      if (this.signingKey !== undefined) {
        const all = { ...billing.attributes, ...attributes };
        attributes[ATTR_TOLLGATE_SIGNATURE] = signature((name) => all[name], this.signingKey.secret);
        attributes[ATTR_TOLLGATE_SIGNATURE_KEY_ID] = this.signingKey.id;
      }
      const { span } = billing;
      span.setAttributes(attributes);
      if (record.outcome === 'failed' || record.outcome === 'upstream_error') {
        span.setStatus({ code: SpanStatusCode.ERROR, message: record.outcome });
      }
      span.end();
    });
  }
}
