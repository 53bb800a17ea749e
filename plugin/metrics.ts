/**
 * The gateway's Prometheus metrics (DESIGN.md), registered on the registry the application gives.
 * No account or key label: per-account views come from the ledger.
 */
import { Counter, Histogram, type CounterConfiguration, type HistogramConfiguration, type LabelValues, type Registry } from 'prom-client';
import { MICROS_PER_CREDIT } from '../ledger/money.js';
import {
  METRIC_COST_CREDITS,
  METRIC_OVERRUNS,
  METRIC_PARSE_ERRORS,
  METRIC_REQUESTS,
  METRIC_REQUEST_DURATION,
  METRIC_RESERVATION_REJECTIONS,
  METRIC_RESERVED_CREDITS,
  METRIC_TELEMETRY_ERRORS,
  METRIC_TIME_TO_FIRST_BYTE,
  METRIC_UNMETERED,
  METRIC_UNRECORDED_SPANS,
  METRIC_USAGE_MISSING,
  METRIC_USAGE_TOKENS,
  REJECTION_REASONS,
} from './semconv.js';

// LLM responses run from sub-second to many minutes (long agent turns).
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const TTFB_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

export function createGatewayMetrics(registry: Registry) {
  const registers = [registry];
  // Several tollgate() instances may share one registry (prom-client refuses a name twice): they
  // then share its metrics, as one gateway's.
  const counter = <L extends string>(config: CounterConfiguration<L>) => (registry.getSingleMetric(config.name) as Counter<L> | undefined) ?? new Counter(config);
  const histogram = <L extends string>(config: HistogramConfiguration<L>) =>
    (registry.getSingleMetric(config.name) as Histogram<L> | undefined) ?? new Histogram(config);
  const metrics = {
    requests: counter({
      name: METRIC_REQUESTS,
      help: 'Metered LLM requests by terminal outcome (rejected: refused before reserving).',
      labelNames: ['provider', 'model', 'outcome'] as const,
      registers,
    }),
    reservedCredits: creditCounter(registry, {
      name: METRIC_RESERVED_CREDITS,
      help: 'Credits reserved before forwarding.',
      labelNames: ['provider', 'model'] as const,
    }),
    costCredits: creditCounter(registry, {
      name: METRIC_COST_CREDITS,
      help: 'Credits the reported usage costs under the gateway pricing table.',
      labelNames: ['provider', 'model'] as const,
    }),
    usageTokens: counter({
      name: METRIC_USAGE_TOKENS,
      help: 'Tokens reported by the provider; input and output are totals, the other types parts of them.',
      labelNames: ['provider', 'model', 'type'] as const,
      registers,
    }),
    overruns: counter({
      name: METRIC_OVERRUNS,
      help: 'Requests whose cost exceeded their reservation.',
      labelNames: ['provider', 'model'] as const,
      registers,
    }),
    usageMissing: counter({
      name: METRIC_USAGE_MISSING,
      help: 'Served requests (2xx) whose response carried no usage; they settle at the reserved amount.',
      labelNames: ['provider', 'model'] as const,
      registers,
    }),
    rejections: counter({
      name: METRIC_RESERVATION_REJECTIONS,
      help: 'Requests refused before a reservation was made.',
      labelNames: ['reason'] as const,
      registers,
    }),
    parseErrors: counter({
      name: METRIC_PARSE_ERRORS,
      help: 'Response frames the usage parser gave up on (oversized or malformed); the bytes still reached the client.',
      labelNames: ['provider'] as const,
      registers,
    }),
    unmetered: counter({
      name: METRIC_UNMETERED,
      help: 'Requests forwarded without a reservation while the ledger was unavailable (ledgerOutage "forward").',
      labelNames: ['provider'] as const,
      registers,
    }),
    unrecordedSpans: counter({
      name: METRIC_UNRECORDED_SPANS,
      help: 'Billing spans that a sampler dropped; their reservations settle only through the sweeper.',
      registers,
    }),
    telemetryErrors: counter({
      name: METRIC_TELEMETRY_ERRORS,
      help: 'Errors thrown by span or metric calls; the request went on regardless.',
      registers,
    }),
    duration: histogram({
      name: METRIC_REQUEST_DURATION,
      help: 'From request arrival to the terminal outcome.',
      labelNames: ['provider', 'outcome'] as const,
      buckets: DURATION_BUCKETS,
      registers,
    }),
    timeToFirstByte: histogram({
      name: METRIC_TIME_TO_FIRST_BYTE,
      help: 'From request arrival to the first response byte from the upstream.',
      labelNames: ['provider'] as const,
      buckets: TTFB_BUCKETS,
      registers,
    }),
  };
  // A labelled series exists only from its first increment, and rate()/increase() never count
  // that first one: start the series of known label values at 0 so the first 402 shows.
  for (const reason of REJECTION_REASONS) metrics.rejections.inc({ reason }, 0);
  return metrics;
}

/** A counter in credits that is given micro-credits: see creditCounter. */
export interface CreditCounter<L extends string> {
  /** Adds `micro` micro-credits (a safe integer) under `labels`. */
  add(labels: LabelValues<L>, micro: number): void;
}

const creditCounters = new WeakMap<Counter<string>, CreditCounter<string>>();

/**
 * A counter in credits, so that Prometheus shows credits, over exact integer totals of
 * micro-credits per label set, converted once, when scraped: money is never accumulated in
 * floating point (DESIGN.md; 10 × 0.0026 added up as floats is 0.025999999999999995). The same
 * counter again for a registry that has it, as several tollgate() instances may share one.
 */
export function creditCounter<L extends string = never>(
  registry: Registry,
  config: { name: string; help: string; labelNames?: readonly L[] },
): CreditCounter<L> {
  const existing = registry.getSingleMetric(config.name) as Counter<L> | undefined;
  const shared = existing && creditCounters.get(existing as Counter<string>);
  if (shared) return shared as CreditCounter<L>;
  const labelNames = config.labelNames ?? [];
  const totals = new Map<string, { labels: LabelValues<L>; micro: number }>();
  const counter = new Counter<L>({
    ...config,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels, micro } of totals.values()) this.inc(labels, micro / MICROS_PER_CREDIT);
    },
  });
  const credits: CreditCounter<L> = {
    add(labels, micro) {
      const key = JSON.stringify(labelNames.map((name) => labels[name]));
      const total = totals.get(key);
      if (total === undefined) totals.set(key, { labels: { ...labels }, micro });
      else total.micro += micro;
    },
  };
  creditCounters.set(counter as Counter<string>, credits as CreditCounter<string>);
  return credits;
}
