/**
 * Options are validated once, when the middleware is built: a bad value fails fast with an error
 * that names the option and the value, never on the first request.
 */
import { trace, type TracerProvider } from '@opentelemetry/api';
import { Registry } from 'prom-client';
import type { Ledger } from '../ledger/types.js';
import { MAX_TTL_SECONDS } from '../ledger/validate.js';
import { defaultPricing } from './default-pricing.js';
import { OptionError, positiveIntegerOption } from './option-error.js';
import type { PricingTable } from './pricing.js';
import { checkSigningKey, type SigningKey } from './signing.js';
import type { OutcomeRecord, TollgateOptions } from './types.js';

export class TollgateOptionError extends OptionError {
  readonly code = 'ERR_TOLLGATE_OPTION';
  constructor(option: string, value: unknown, expected: string) {
    super('tollgate', option, value, expected);
    this.name = 'TollgateOptionError';
  }
}

export interface ResolvedOptions {
  ledger: Ledger;
  pricing: PricingTable;
  openaiUpstream: URL;
  anthropicUpstream: URL;
  openaiApiKey: string | undefined;
  anthropicApiKey: string | undefined;
  maxBodyBytes: number;
  defaultMaxOutputTokens: number;
  bytesPerInputToken: number;
  safetyBuffer: number;
  reservationTtlSeconds: number;
  upstreamConnectTimeoutMs: number;
  upstreamIdleTimeoutMs: number;
  chatUsage: 'reserve' | 'inject';
  ledgerOutage: 'reject' | 'forward';
  maxUsageEventBytes: number;
  tracerProvider: TracerProvider;
  spanSigningKey: SigningKey | undefined;
  registry: Registry;
  onOutcome: ((record: OutcomeRecord) => void) | undefined;
  logger: (message: string) => void;
}

function positiveInteger(name: string, value: unknown, fallback: number): number {
  return positiveIntegerOption(TollgateOptionError, name, value, fallback);
}

/** A positive integer up to `max`; `what` describes it in the error. */
function positiveIntegerUpTo(name: string, value: unknown, fallback: number, max: number, what: string): number {
  const number = positiveInteger(name, value, fallback);
  if (number > max) throw new TollgateOptionError(name, value, `${what}, at most ${max}`);
  return number;
}

function atLeast(name: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new TollgateOptionError(name, value, `a finite number >= ${min}`);
  }
  return value;
}

/**
 * What `text` must be instead, when it cannot be an upstream base URL, and how to show it (its
 * password never). Requests go to the URL's origin and path: a query or credentials in it would
 * be dropped without a word (the upstream credential is openaiApiKey / anthropicApiKey). The
 * command line checks its --…-upstream flags with it too.
 */
export function upstreamUrlProblem(text: unknown): { expected: string; shown: unknown } | undefined {
  if (typeof text !== 'string' || !URL.canParse(text)) return { expected: 'an http(s) URL', shown: text };
  const url = new URL(text);
  if (url.username !== '' || url.password !== '') {
    return { expected: 'an http(s) URL without credentials (use the API key options)', shown: `${url.protocol}//…@${url.host}${url.pathname}` };
  }
  if (url.search !== '') return { expected: 'an http(s) URL without a query', shown: text };
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { expected: 'an http(s) URL', shown: text };
  return undefined;
}

function upstreamUrl(name: string, value: unknown, fallback: string): URL {
  const text = value ?? fallback;
  const problem = upstreamUrlProblem(text);
  if (problem !== undefined) throw new TollgateOptionError(name, problem.shown, problem.expected);
  return new URL(text as string);
}

/** A C0 control character or DEL: a header value cannot carry one, nor PostgreSQL text a NUL. */
export function hasControlCharacter(text: string): boolean {
  return /[\u0000-\u001f\u007f]/.test(text);
}

/** An upstream credential goes into a header: one with a control character fails every request. */
function optionalString(name: string, value: unknown): string | undefined {
  if (value === undefined || (typeof value === 'string' && value !== '' && !hasControlCharacter(value))) return value;
  throw new TollgateOptionError(name, value, 'a non-empty string without control characters');
}

/** Node runs a longer timer after 1 ms (TimeoutOverflowWarning): every request would time out. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function timeoutMs(name: string, value: unknown, fallback: number): number {
  return positiveIntegerUpTo(name, value, fallback, MAX_TIMER_MS, 'a positive integer of milliseconds');
}

/** An object with the methods this module calls, or the option's error naming it. */
function hasMethods<T>(name: string, value: unknown, methods: string[], expected: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'object' && value !== null && methods.every((method) => typeof (value as Record<string, unknown>)[method] === 'function')) {
    return value as T;
  }
  throw new TollgateOptionError(name, value, expected);
}

/** The log never breaks a request: a logger that throws is ignored. */
function safeLogger(logger: ((message: string) => void) | undefined): (message: string) => void {
  const log = logger ?? ((message: string) => console.warn(message));
  return (message) => {
    try {
      log(message);
    } catch {
      // Nowhere left to report it.
    }
  };
}

export function parseOptions(options: TollgateOptions): ResolvedOptions {
  if (options == null || typeof options !== 'object') {
    throw new TollgateOptionError('options', options, 'an object');
  }
  const { ledger } = options;
  if (ledger == null || typeof ledger.reserveForKey !== 'function') {
    throw new TollgateOptionError('ledger', ledger, 'a Ledger (see ledger/types.ts)');
  }
  const chatUsage = options.chatUsage ?? 'reserve';
  if (chatUsage !== 'reserve' && chatUsage !== 'inject') {
    throw new TollgateOptionError('chatUsage', chatUsage, '"reserve" or "inject"');
  }
  const ledgerOutage = options.ledgerOutage ?? 'reject';
  if (ledgerOutage !== 'reject' && ledgerOutage !== 'forward') {
    throw new TollgateOptionError('ledgerOutage', ledgerOutage, '"reject" or "forward"');
  }
  if (options.spanSigningKey !== undefined) {
    try {
      checkSigningKey(options.spanSigningKey, 'spanSigningKey');
    } catch (error) {
      // The key's id only: never its secret.
      throw new TollgateOptionError('spanSigningKey', options.spanSigningKey?.id, `a valid key (${(error as Error).message})`);
    }
  }
  for (const hook of ['onOutcome', 'logger'] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== 'function') {
      throw new TollgateOptionError(hook, options[hook], 'a function');
    }
  }
  return {
    ledger,
    pricing: hasMethods<PricingTable>('pricing', options.pricing, ['price'], 'a pricing table (loadPricing, parsePricing)') ?? defaultPricing(),
    openaiUpstream: upstreamUrl('openaiUpstream', options.openaiUpstream, 'https://api.openai.com'),
    anthropicUpstream: upstreamUrl('anthropicUpstream', options.anthropicUpstream, 'https://api.anthropic.com'),
    openaiApiKey: optionalString('openaiApiKey', options.openaiApiKey),
    anthropicApiKey: optionalString('anthropicApiKey', options.anthropicApiKey),
    maxBodyBytes: positiveInteger('maxBodyBytes', options.maxBodyBytes, 32 * 1024 * 1024),
    defaultMaxOutputTokens: positiveInteger('defaultMaxOutputTokens', options.defaultMaxOutputTokens, 32_768),
    bytesPerInputToken: atLeast('bytesPerInputToken', options.bytesPerInputToken, 1, 1),
    safetyBuffer: atLeast('safetyBuffer', options.safetyBuffer, 1, 1),
    // The ledger's bound, checked here so that a bad option fails at tollgate(), not per request.
    reservationTtlSeconds: positiveIntegerUpTo('reservationTtlSeconds', options.reservationTtlSeconds, 900, MAX_TTL_SECONDS, 'a positive integer'),
    upstreamConnectTimeoutMs: timeoutMs('upstreamConnectTimeoutMs', options.upstreamConnectTimeoutMs, 10_000),
    upstreamIdleTimeoutMs: timeoutMs('upstreamIdleTimeoutMs', options.upstreamIdleTimeoutMs, 600_000),
    chatUsage,
    ledgerOutage,
    maxUsageEventBytes: positiveInteger('maxUsageEventBytes', options.maxUsageEventBytes, 64 * 1024 * 1024),
    tracerProvider:
      hasMethods<TracerProvider>('tracerProvider', options.tracerProvider, ['getTracer'], 'an OpenTelemetry TracerProvider') ?? trace.getTracerProvider(),
    spanSigningKey: options.spanSigningKey,
    registry: hasMethods<Registry>('registry', options.registry, ['registerMetric', 'getSingleMetric'], 'a prom-client Registry') ?? new Registry(),
    onOutcome: options.onOutcome,
    logger: safeLogger(options.logger),
  };
}
