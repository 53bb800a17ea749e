/**
 * The public option and hook types of the `tollgate()` middleware.
 */
import type { TracerProvider } from '@opentelemetry/api';
import type { Registry } from 'prom-client';
import type { Ledger } from '../ledger/types.js';
import type { PricingTable } from './pricing.js';
import type { Outcome, UsageSource } from './semconv.js';
import type { SigningKey } from './signing.js';
import type { Usage } from './usage/types.js';

export interface TollgateOptions {
  /** Where credits are reserved. Required. */
  ledger: Ledger;
  /** Prices per model. Default: the built-in table (plugin/default-pricing.ts). */
  pricing?: PricingTable;
  /** Base URL of the OpenAI API. Default `https://api.openai.com`. */
  openaiUpstream?: string;
  /** Base URL of the Anthropic API. Default `https://api.anthropic.com`. */
  anthropicUpstream?: string;
  /** Credential sent to the OpenAI upstream (as `Authorization: Bearer`). Default: none. */
  openaiApiKey?: string;
  /** Credential sent to the Anthropic upstream (as `x-api-key`). Default: none. */
  anthropicApiKey?: string;
  /** Largest request body accepted, in bytes actually read. Default 32 MiB (coding agents send MBs). */
  maxBodyBytes?: number;
  /** Output tokens assumed when the request sets no maximum, capped by the model's limit. Default 32,768. */
  defaultMaxOutputTokens?: number;
  /**
   * UTF-8 bytes of request body per estimated input token. Default 1: byte-level BPE tokenizers
   * never emit more tokens than bytes, so the body's byte length bounds its input tokens from above.
   */
  bytesPerInputToken?: number;
  /** Multiplier on the estimate before reserving, >= 1. Default 1.0. */
  safetyBuffer?: number;
  /** Milliseconds to wait for a TCP (and TLS) connection to the upstream. Default 10,000. */
  upstreamConnectTimeoutMs?: number;
  /**
   * Milliseconds the upstream may stay silent — before its response headers or between two chunks
   * of the body — before the exchange is aborted (outcome upstream_error; 504 when nothing was
   * sent yet), at most an eighth of it later. Default 600,000: reasoning models can think for
   * minutes before the first byte.
   */
  upstreamIdleTimeoutMs?: number;
  /**
   * What to do when the ledger cannot be reached. 'reject' (default, fail closed): 503 with
   * Retry-After. 'forward' (fail open): forward the request without a reservation, unbilled and
   * unauthenticated — any key passes while the ledger is down — counted in
   * tollgate_unmetered_requests_total and logged. Choose it only where availability matters more
   * than billing and access control.
   */
  ledgerOutage?: 'reject' | 'forward';
  /** Seconds a reservation may stay open before the sweeper settles it at its amount. Default 900. */
  reservationTtlSeconds?: number;
  /**
   * Chat Completions streams carry usage only when the client asks for it
   * (`stream_options.include_usage`). 'reserve' (default) leaves the request as it is and such a
   * request settles at its reserved amount; 'inject' adds `include_usage` to the request, which
   * re-serialises the body and adds a final `choices: []` chunk the client did not ask for.
   */
  chatUsage?: 'reserve' | 'inject';
  /** Largest SSE event (or non-streaming JSON body) parsed for usage. Default 64 MiB. */
  maxUsageEventBytes?: number;
  /**
   * Tracer provider for billing spans. Default: the global one. Billing spans must never be
   * sampled out: give Tollgate a provider with an AlwaysOn sampler of its own. Spans that come
   * out non-recording are counted in tollgate_billing_spans_unrecorded_total.
   */
  tracerProvider?: TracerProvider;
  /**
   * Key that signs each billing span's billing attributes (plugin/signing.ts), shared with
   * settlement, which then refuses unsigned or altered spans. Default: none (spans unsigned).
   */
  spanSigningKey?: SigningKey;
  /** prom-client registry for the gateway metrics. Default: a new Registry (read it from `tollgate().registry`). */
  registry?: Registry;
  /** Called once per metered request with its outcome. Errors thrown by the hook are logged, never raised. */
  onOutcome?: (record: OutcomeRecord) => void;
  /** Where warnings go. Default `console.warn`. */
  logger?: (message: string) => void;
}

export type Provider = 'openai' | 'anthropic';

/** What a metered request ended as; also what goes on its billing span. */
export interface OutcomeRecord {
  reservationId: string;
  accountId: string;
  provider: Provider;
  requestModel: string;
  responseModel?: string;
  /** Micro-credits reserved. */
  reserved: number;
  /** Micro-credits the usage costs under the gateway's pricing, when the final usage was reported. */
  cost?: number;
  outcome: Outcome;
  /** The counts the provider reported, final or (on a broken stream) known so far. */
  usage?: Usage;
  /**
   * 'reported' when the usage is final (the body's terminal event passed, input and output both
   * counted) and billable as is; otherwise 'missing': settlement charges the reservation.
   */
  usageSource: UsageSource;
  /** Upstream HTTP status, when the upstream answered. */
  status?: number;
}
