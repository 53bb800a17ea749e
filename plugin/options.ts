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

/** The ledger's bound (MAX_TTL_SECONDS), checked here so that a bad option fails at tollgate(), not per request. */
function reservationTtl(value: unknown): number {
  const seconds = positiveInteger('reservationTtlSeconds', value, 900);
  if (seconds > MAX_TTL_SECONDS) throw new TollgateOptionError('reservationTtlSeconds', value, `a positive integer, at most ${MAX_TTL_SECONDS}`);
  return seconds;
}

function atLeast(name: string, value: unknown, min: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min) {
    throw new TollgateOptionError(name, value, `a finite number >= ${min}`);
  }
  return value;
}

function upstreamUrl(name: string, value: unknown, fallback: string): URL {
  const text = value ?? fallback;
  if (typeof text === 'string' && URL.canParse(text)) {
    const url = new URL(text);
    if (url.protocol === 'http:' || url.protocol === 'https:') return url;
  }
  throw new TollgateOptionError(name, value, 'an http(s) URL');
}

function optionalString(name: string, value: unknown): string | undefined {
  if (value === undefined || (typeof value === 'string' && value !== '')) return value;
  throw new TollgateOptionError(name, value, 'a non-empty string');
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
      throw new TollgateOptionError('spanSigningKey', options.spanSigningKey.id, `a valid key (${(error as Error).message})`);
    }
  }
  for (const hook of ['onOutcome', 'logger'] as const) {
    if (options[hook] !== undefined && typeof options[hook] !== 'function') {
      throw new TollgateOptionError(hook, options[hook], 'a function');
    }
  }
  return {
    ledger,
    pricing: options.pricing ?? defaultPricing(),
    openaiUpstream: upstreamUrl('openaiUpstream', options.openaiUpstream, 'https://api.openai.com'),
    anthropicUpstream: upstreamUrl('anthropicUpstream', options.anthropicUpstream, 'https://api.anthropic.com'),
    openaiApiKey: optionalString('openaiApiKey', options.openaiApiKey),
    anthropicApiKey: optionalString('anthropicApiKey', options.anthropicApiKey),
    maxBodyBytes: positiveInteger('maxBodyBytes', options.maxBodyBytes, 32 * 1024 * 1024),
    defaultMaxOutputTokens: positiveInteger('defaultMaxOutputTokens', options.defaultMaxOutputTokens, 32_768),
    bytesPerInputToken: atLeast('bytesPerInputToken', options.bytesPerInputToken, 1, 1),
    safetyBuffer: atLeast('safetyBuffer', options.safetyBuffer, 1, 1),
    reservationTtlSeconds: reservationTtl(options.reservationTtlSeconds),
    upstreamConnectTimeoutMs: positiveInteger('upstreamConnectTimeoutMs', options.upstreamConnectTimeoutMs, 10_000),
    upstreamIdleTimeoutMs: positiveInteger('upstreamIdleTimeoutMs', options.upstreamIdleTimeoutMs, 600_000),
    chatUsage,
    ledgerOutage,
    maxUsageEventBytes: positiveInteger('maxUsageEventBytes', options.maxUsageEventBytes, 64 * 1024 * 1024),
    tracerProvider: options.tracerProvider ?? trace.getTracerProvider(),
    spanSigningKey: options.spanSigningKey,
    registry: options.registry ?? new Registry(),
    onOutcome: options.onOutcome,
    logger: options.logger ?? ((message) => console.warn(message)),
  };
}
