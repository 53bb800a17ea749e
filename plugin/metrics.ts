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
  OUTCOMES,
  REJECTION_REASONS,
  TOKEN_TYPES,
  type Outcome,
  type TokenType,
} from './semconv.js';

// LLM responses run from sub-second to many minutes (long agent turns).
const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const TTFB_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

/**
 * The counters one request of a (provider, model) adds to, looked up once per request. The
 * model is the metric label (a priced model name, 'default', or 'unknown' for a rejection).
 */
export interface ModelSeries {
  reserved: Tally;
  cost: Tally;
  overruns: Tally;
  usageMissing: Tally;
  tokens: Record<TokenType, Tally>;
  /** tollgate_requests_total, by outcome. */
  requests: Record<Outcome | 'rejected', Tally>;
}

export function createGatewayMetrics(registry: Registry) {
  const registers = [registry];
  // Several tollgate() instances may share one registry (prom-client refuses a name twice): they
  // then share its metrics, as one gateway's.
  const counter = <L extends string>(config: CounterConfiguration<L>) => (registry.getSingleMetric(config.name) as Counter<L> | undefined) ?? new Counter(config);
  const histogram = <L extends string>(config: HistogramConfiguration<L>) =>
    (registry.getSingleMetric(config.name) as Histogram<L> | undefined) ?? new Histogram(config);
  // The counters every request adds to are tallied (tallyCounter); the others are prom-client's.
  const requests = tallyCounter(registry, {
    name: METRIC_REQUESTS,
    help: 'Metered LLM requests by terminal outcome (rejected: refused before reserving).',
    labelNames: ['provider', 'model', 'outcome'] as const,
  });
  const reservedCredits = tallyCounter(registry, {
    name: METRIC_RESERVED_CREDITS,
    help: 'Credits reserved before forwarding.',
    labelNames: ['provider', 'model'] as const,
    unit: MICROS_PER_CREDIT,
  });
  const costCredits = tallyCounter(registry, {
    name: METRIC_COST_CREDITS,
    help: 'Credits the reported usage costs under the gateway pricing table.',
    labelNames: ['provider', 'model'] as const,
    unit: MICROS_PER_CREDIT,
  });
  const usageTokens = tallyCounter(registry, {
    name: METRIC_USAGE_TOKENS,
    help: 'Tokens reported by the provider; input and output are totals, the other types parts of them.',
    labelNames: ['provider', 'model', 'type'] as const,
  });
  const overruns = tallyCounter(registry, {
    name: METRIC_OVERRUNS,
    help: 'Requests whose cost exceeded their reservation.',
    labelNames: ['provider', 'model'] as const,
  });
  const usageMissing = tallyCounter(registry, {
    name: METRIC_USAGE_MISSING,
    help: 'Served requests (2xx) whose response carried no usage; they settle at the reserved amount.',
    labelNames: ['provider', 'model'] as const,
  });

  /** ModelSeries by provider, then model label. */
  const seriesByProvider = new Map<string, Map<string, ModelSeries>>();
  function modelSeries(provider: string, model: string): ModelSeries {
    const labels = { provider, model };
    // A series shows on /metrics only once added to, so every label value can have its tally.
    const each = <V extends string>(values: readonly V[], tally: (value: V) => Tally) =>
      Object.fromEntries(values.map((value) => [value, tally(value)])) as Record<V, Tally>;
    return {
      reserved: reservedCredits.series(labels),
      cost: costCredits.series(labels),
      overruns: overruns.series(labels),
      usageMissing: usageMissing.series(labels),
      tokens: each(TOKEN_TYPES, (type) => usageTokens.series({ ...labels, type })),
      requests: each([...OUTCOMES, 'rejected'], (outcome) => requests.series({ ...labels, outcome })),
    };
  }

  const metrics = {
    /** The counters of one (provider, model label). */
    series(provider: string, model: string): ModelSeries {
      let byModel = seriesByProvider.get(provider);
      if (byModel === undefined) seriesByProvider.set(provider, (byModel = new Map()));
      let series = byModel.get(model);
      if (series === undefined) byModel.set(model, (series = modelSeries(provider, model)));
      return series;
    },
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

/** The running total of one counter series (see tallyCounter). */
export class Tally {
  total = 0;
  /** False until the first add(): prom-client shows a series only from its first increment. */
  used = false;

  add(amount: number): void {
    this.total += amount;
    this.used = true;
  }
}

/** A counter whose series are tallies: see tallyCounter. */
export interface TallyCounter<L extends string> {
  /** The series of these label values: the same Tally on every call, to be kept by the caller. */
  series(labels: LabelValues<L>): Tally;
}

const tallyCounters = new WeakMap<Counter<string>, TallyCounter<string>>();

/**
 * A prom-client counter whose totals are kept here, one Tally per series, and handed to
 * prom-client when scraped, divided by `unit`. Two reasons:
 * - Money is never accumulated in floating point (DESIGN.md): a credit counter (unit 1e6) adds
 *   integer micro-credits and shows credits (10 × 0.0026 added up as floats is 0.025999999999999995).
 * - On the request path a series is a field increment. prom-client's inc() checks the labels and
 *   builds a string key on every call: the gateway's counter and histogram calls cost 9 µs per
 *   request, 1.3 µs with tallies for its counters (a loop of 300,000 requests' calls).
 * registry.resetMetrics() clears the tallies too. The same counter again for a registry that has
 * it, as several tollgate() instances may share one.
 */
export function tallyCounter<L extends string = never>(
  registry: Registry,
  { name, help, labelNames = [], unit = 1 }: { name: string; help: string; labelNames?: readonly L[]; unit?: number },
): TallyCounter<L> {
  const existing = registry.getSingleMetric(name) as Counter<L> | undefined;
  const shared = existing && tallyCounters.get(existing as Counter<string>);
  if (shared) return shared as TallyCounter<L>;
  const series = new Map<string, { labels: LabelValues<L>; tally: Tally }>();
  const clear = (counter: Counter<L>) => Counter.prototype.reset.call(counter);
  const counter = new Counter<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      clear(this);
      for (const { labels, tally } of series.values()) if (tally.used) this.inc(labels, tally.total / unit);
    },
  });
  counter.reset = () => {
    clear(counter);
    for (const { tally } of series.values()) {
      tally.total = 0;
      tally.used = false;
    }
  };
  const tallied: TallyCounter<L> = {
    series(labels) {
      const key = JSON.stringify(labelNames.map((label) => labels[label]));
      let entry = series.get(key);
      if (entry === undefined) series.set(key, (entry = { labels: { ...labels }, tally: new Tally() }));
      return entry.tally;
    },
  };
  tallyCounters.set(counter as Counter<string>, tallied as TallyCounter<string>);
  return tallied;
}
