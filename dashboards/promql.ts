/**
 * Small PromQL builders for the dashboards, so that every panel spells `sum by (…) (rate(…))`
 * and `histogram_quantile` the same way. They return plain strings: what you read in the
 * generated JSON is what Grafana sends to Prometheus.
 *
 * Label values come typed from plugin/semconv.ts, so a misspelt outcome or result fails to
 * compile instead of drawing an empty panel.
 */
import type { Outcome, RejectionReason, SettlementResultLabel, TokenType } from '../plugin/semconv.js';

/** Grafana's rate window: at least four scrape intervals, whatever the zoom. */
export const RATE_INTERVAL = '$__rate_interval';
/** The dashboard's whole time range, for stat panels that total it. */
export const RANGE = '$__range';

/**
 * tollgate_requests_total{outcome} also counts `rejected` (refused before a reservation was made;
 * see the comment at the end of plugin/semconv.ts, which exports no constant for it).
 */
export const OUTCOME_REJECTED = 'rejected';
export type RequestOutcome = Outcome | typeof OUTCOME_REJECTED;

/** Labels whose values semconv.ts lists, with the type of those values. */
interface LabelValues {
  outcome: RequestOutcome;
  result: SettlementResultLabel;
  reason: RejectionReason;
  type: TokenType;
}

/** `label="value"`. */
export function is<L extends keyof LabelValues>(label: L, value: LabelValues[L]): string {
  return `${label}="${value}"`;
}

/** `label=~"a|b"` (or `label="a"` for one value). */
export function isOneOf<L extends keyof LabelValues>(label: L, values: readonly LabelValues[L][]): string {
  return values.length === 1 ? is(label, values[0]!) : `${label}=~"${values.join('|')}"`;
}

/** `label!~"a|b"` (or `label!="a"` for one value). */
export function isNoneOf<L extends keyof LabelValues>(label: L, values: readonly LabelValues[L][]): string {
  return values.length === 1 ? `${label}!="${values[0]}"` : `${label}!~"${values.join('|')}"`;
}

/**
 * tollgate_requests_total matchers for the two request populations the ratios divide by; the
 * recording rules tollgate:metered_requests:rate5m and tollgate:served_requests:rate5m in
 * alerts.yaml use the same.
 * - metered: requests that got a reservation (every outcome but rejected).
 * - served: requests the upstream answered, the only ones that can report usage or over-run.
 */
export const METERED = isNoneOf('outcome', [OUTCOME_REJECTED]);
export const SERVED = isNoneOf('outcome', [OUTCOME_REJECTED, 'upstream_error']);

/** Dashboard variable filters (multi-value variables expand to a regex, hence `=~`). */
export const PROVIDER_FILTER = 'provider=~"$provider"';
export const MODEL_FILTER = 'model=~"$model"';

/** `metric{m1, m2}`, or the bare metric without matchers. */
export function selector(metric: string, matchers: readonly string[] = []): string {
  return matchers.length === 0 ? metric : `${metric}{${matchers.join(', ')}}`;
}

function grouping(by: readonly string[]): string {
  return by.length === 0 ? '' : ` by (${by.join(', ')})`;
}

/** `sum by (…) (rate(series[window]))`: per-second rate of a counter, summed over replicas. */
export function sumRate(series: string, by: readonly string[] = [], window = RATE_INTERVAL): string {
  return `sum${grouping(by)} (rate(${series}[${window}]))`;
}

/** `sum by (…) (increase(series[$__range]))`: how much a counter grew over the time range. */
export function sumIncrease(series: string, by: readonly string[] = []): string {
  return `sum${grouping(by)} (increase(${series}[${RANGE}]))`;
}

/** A per-second rate as a rate per hour (credits per hour read better than per second). */
export function perHour(perSecond: string): string {
  return `${perSecond} * 3600`;
}

/**
 * The q-quantile of a prom-client histogram, over all replicas: `histogram_quantile(q,
 * sum by (…, le) (rate(<histogram>_bucket{…}[window])))`.
 */
export function quantile(
  q: number,
  histogram: string,
  opts: { by?: readonly string[]; matchers?: readonly string[]; window?: string } = {},
): string {
  const by = [...(opts.by ?? []), 'le'];
  return `histogram_quantile(${q}, ${sumRate(selector(`${histogram}_bucket`, opts.matchers), by, opts.window)})`;
}

/**
 * `numerator / denominator`, where a missing numerator counts as 0: prom-client creates a labelled
 * counter's series on its first increment, so "no over-runs yet" would otherwise draw "No data"
 * instead of a line at 0. Both sides must aggregate by the same labels.
 */
export function ratio(numerator: string, denominator: string): string {
  return `(${numerator} or 0 * ${denominator}) / ${denominator}`;
}
