/**
 * Every span attribute and metric name Tollgate emits, in one module.
 *
 * These names are a contract (../shared/DESIGN.md): the settlement processor reads the span
 * attributes, and the dashboards and alert rules read the metrics. Change them only together.
 *
 * The gen_ai.* names follow the OpenTelemetry GenAI semantic conventions
 * (https://opentelemetry.io/docs/specs/semconv/gen-ai/). They are still "development" status
 * in @opentelemetry/semantic-conventions (exported only from its `incubating` entry point,
 * which the project recommends copying from rather than importing), so they are copied here.
 */
import type { Usage } from './usage/types.js';

export const ATTR_GEN_AI_PROVIDER_NAME = 'gen_ai.provider.name' as const;
export const ATTR_GEN_AI_OPERATION_NAME = 'gen_ai.operation.name' as const;
export const ATTR_GEN_AI_REQUEST_MODEL = 'gen_ai.request.model' as const;
export const ATTR_GEN_AI_RESPONSE_MODEL = 'gen_ai.response.model' as const;
export const ATTR_GEN_AI_RESPONSE_ID = 'gen_ai.response.id' as const;
/** Total input tokens, cached ones included (Anthropic's input_tokens is normalised). */
export const ATTR_GEN_AI_USAGE_INPUT_TOKENS = 'gen_ai.usage.input_tokens' as const;
/** Total output tokens, reasoning included. */
export const ATTR_GEN_AI_USAGE_OUTPUT_TOKENS = 'gen_ai.usage.output_tokens' as const;
export const ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS = 'gen_ai.usage.cache_read.input_tokens' as const;
export const ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS = 'gen_ai.usage.cache_creation.input_tokens' as const;
export const ATTR_GEN_AI_USAGE_REASONING_OUTPUT_TOKENS = 'gen_ai.usage.reasoning.output_tokens' as const;
/** Stable HTTP semantic convention; settlement reads it to tell "upstream never answered 2xx". */
export const ATTR_HTTP_RESPONSE_STATUS_CODE = 'http.response.status_code' as const;

export const ATTR_TOLLGATE_RESERVATION_ID = 'tollgate.reservation.id' as const;
export const ATTR_TOLLGATE_ACCOUNT_ID = 'tollgate.account.id' as const;
/** Integer micro-credits. */
export const ATTR_TOLLGATE_RESERVATION_AMOUNT = 'tollgate.reservation.amount' as const;
export const ATTR_TOLLGATE_OUTCOME = 'tollgate.outcome' as const;
export const ATTR_TOLLGATE_USAGE_SOURCE = 'tollgate.usage.source' as const;
/** Content hash of the pricing table the gateway estimated with (see plugin/pricing.ts). */
export const ATTR_TOLLGATE_PRICING_VERSION = 'tollgate.pricing.version' as const;
/** HMAC of the billing attributes (plugin/signing.ts), and the id of the key that made it. */
export const ATTR_TOLLGATE_SIGNATURE = 'tollgate.signature' as const;
export const ATTR_TOLLGATE_SIGNATURE_KEY_ID = 'tollgate.signature.key_id' as const;

/** Each Usage field and the span attribute it goes to (written by the gateway, read by settlement). */
export const USAGE_ATTRIBUTES: ReadonlyArray<readonly [keyof Usage, string]> = [
  ['inputTokens', ATTR_GEN_AI_USAGE_INPUT_TOKENS],
  ['outputTokens', ATTR_GEN_AI_USAGE_OUTPUT_TOKENS],
  ['cacheReadInputTokens', ATTR_GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS],
  ['cacheCreationInputTokens', ATTR_GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS],
  ['reasoningOutputTokens', ATTR_GEN_AI_USAGE_REASONING_OUTPUT_TOKENS],
];

/** The terminal outcomes of a metered request. */
export const OUTCOMES = ['completed', 'incomplete', 'failed', 'cancelled', 'upstream_error'] as const;
export type Outcome = (typeof OUTCOMES)[number];

export const USAGE_SOURCES = ['reported', 'missing'] as const;
export type UsageSource = (typeof USAGE_SOURCES)[number];

/** Gateway metrics (prom-client), prefix tollgate_. Counters end in _total, durations in seconds. */
export const METRIC_REQUESTS = 'tollgate_requests_total' as const;
export const METRIC_RESERVED_CREDITS = 'tollgate_reserved_credits_total' as const;
export const METRIC_COST_CREDITS = 'tollgate_cost_credits_total' as const;
export const METRIC_USAGE_TOKENS = 'tollgate_usage_tokens_total' as const;
export const METRIC_OVERRUNS = 'tollgate_overruns_total' as const;
export const METRIC_USAGE_MISSING = 'tollgate_usage_missing_total' as const;
export const METRIC_RESERVATION_REJECTIONS = 'tollgate_reservation_rejections_total' as const;
export const METRIC_REQUEST_DURATION = 'tollgate_request_duration_seconds' as const;
export const METRIC_TIME_TO_FIRST_BYTE = 'tollgate_time_to_first_byte_seconds' as const;
/** Frames the usage parser gave up on (oversized or malformed); the bytes still reached the client. */
export const METRIC_PARSE_ERRORS = 'tollgate_usage_parse_errors_total' as const;
/** Billing spans the exporter could not deliver (gave up retrying): settled by the sweeper only. */
export const METRIC_DROPPED_SPANS = 'tollgate_billing_spans_dropped_total' as const;
/** Billing spans that came out non-recording (a sampler dropped them): settled by the sweeper only. */
export const METRIC_UNRECORDED_SPANS = 'tollgate_billing_spans_unrecorded_total' as const;
/** Requests forwarded without a reservation because the ledger was down (ledgerOutage 'forward'). */
export const METRIC_UNMETERED = 'tollgate_unmetered_requests_total' as const;
/** Errors thrown by telemetry (span or metric calls); the request went on regardless. */
export const METRIC_TELEMETRY_ERRORS = 'tollgate_telemetry_errors_total' as const;

/** Settlement metrics. */
export const METRIC_SETTLEMENTS = 'tollgate_settlements_total' as const;
export const METRIC_SETTLED_CREDITS = 'tollgate_settled_credits_total' as const;
export const METRIC_RELEASED_CREDITS = 'tollgate_released_credits_total' as const;
export const METRIC_OVERRUN_CREDITS = 'tollgate_overrun_credits_total' as const;
export const METRIC_SETTLEMENT_LAG = 'tollgate_settlement_lag_seconds' as const;
export const METRIC_OPEN_RESERVATIONS = 'tollgate_open_reservations' as const;

/** Token types of tollgate_usage_tokens_total{type}. input/output are totals; the rest are parts. */
export const TOKEN_TYPES = ['input', 'output', 'cache_read', 'cache_creation', 'reasoning'] as const;
export type TokenType = (typeof TOKEN_TYPES)[number];

/**
 * Values of tollgate_settlements_total{result}. The first five are per reservation; `invalid`
 * (a billing span missing or mangling a required attribute), `invalid_signature` (missing or
 * wrong, when settlement has signing keys), `unknown_pricing_version` and
 * `error` (the ledger failed; the sender is told to retry) are per span.
 */
export const SETTLEMENT_RESULTS = [
  'settled',
  'corrected',
  'duplicate',
  'expired',
  'unknown_reservation',
  'account_mismatch',
  'invalid',
  'invalid_signature',
  'unknown_pricing_version',
  'error',
] as const;
export type SettlementResultLabel = (typeof SETTLEMENT_RESULTS)[number];

/** Values of tollgate_reservation_rejections_total{reason}. */
export const REJECTION_REASONS = [
  'unauthenticated',
  'body_too_large',
  'invalid_request',
  'unpriced_model',
  'insufficient_credits',
  'ledger_unavailable',
] as const;
export type RejectionReason = (typeof REJECTION_REASONS)[number];

/**
 * Labels of each metric, for the dashboards and rule checks:
 *   tollgate_requests_total{provider,model,outcome}  (outcome: OUTCOMES or 'rejected')
 *   tollgate_reserved_credits_total{provider,model}, tollgate_cost_credits_total{provider,model}
 *   tollgate_usage_tokens_total{provider,model,type}, tollgate_overruns_total{provider,model}
 *   tollgate_usage_missing_total{provider,model}, tollgate_reservation_rejections_total{reason}
 *   tollgate_usage_parse_errors_total{provider}, tollgate_unmetered_requests_total{provider},
 *   tollgate_billing_spans_dropped_total (the standalone server's span exporter)
 *   tollgate_request_duration_seconds{provider,outcome}, tollgate_time_to_first_byte_seconds{provider}
 *     (histograms)
 *   tollgate_settlements_total{result}; tollgate_settled_credits_total,
 *   tollgate_released_credits_total, tollgate_overrun_credits_total (counters, no labels);
 *   tollgate_settlement_lag_seconds (histogram); tollgate_open_reservations (gauge)
 * Credit counters count credits (micro-credits / 1e6) so that Prometheus shows credits.
 */
