/**
 * "Tollgate / Settlement health": is every reservation ending, and on time? Throughput and lag of
 * the settlement processor, reservations that stay open or expire (stranded: their span never
 * came), spans settlement refused, ledger errors, and the Collector queue in between.
 */
import type * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import {
  METRIC_OPEN_RESERVATIONS,
  METRIC_OVERRUN_CREDITS,
  METRIC_RELEASED_CREDITS,
  METRIC_REQUESTS,
  METRIC_SETTLED_CREDITS,
  METRIC_SETTLEMENTS,
  METRIC_SETTLEMENT_LAG,
  METRIC_UNRECORDED_SPANS,
  type SettlementResultLabel,
} from '../plugin/semconv.js';
import { ALERT_THRESHOLDS } from './alert-thresholds.js';
import { UNITS, buildDashboard, prometheusDatasourceVariable, statPanel, timeseriesPanel } from './panels.js';
import { METERED, isOneOf, perHour, quantile, selector, sumIncrease, sumRate } from './promql.js';
import { BILLING_EXPORTER, COLLECTOR_METRICS, SCRAPE_JOBS } from './sources.js';

/** Results for spans settlement refused to apply (TollgateSettlementSpansRejected). */
export const REJECTED_SPAN_RESULTS = [
  'unknown_reservation',
  'account_mismatch',
  'invalid',
  'invalid_signature',
  'unknown_pricing_version',
] as const satisfies readonly SettlementResultLabel[];

function settlements(results: readonly SettlementResultLabel[]): string {
  return selector(METRIC_SETTLEMENTS, [isOneOf('result', results)]);
}

/**
 * Every settlement replica reports the ledger-wide number of open reservations, so the replicas
 * are not summed.
 */
const OPEN_RESERVATIONS = `max(${METRIC_OPEN_RESERVATIONS})`;

const nowRow = {
  title: 'Now',
  panels: [
    statPanel({
      title: 'Open reservations',
      description: 'Reservations neither settled nor expired yet: requests in flight plus spans on their way to settlement.',
      unit: UNITS.count,
      target: { expr: OPEN_RESERVATIONS },
    }),
    statPanel({
      title: 'Settlement lag p99',
      description: 'From a billing span\'s end to its settlement. Red from the TollgateSettlementLagHigh threshold.',
      unit: UNITS.seconds,
      alertThreshold: ALERT_THRESHOLDS.TollgateSettlementLagHigh,
      target: { expr: quantile(0.99, METRIC_SETTLEMENT_LAG) },
    }),
    statPanel({
      title: 'Expired reservations',
      description: 'Reservations the sweeper settled at their full amount because no span came before the TTL, over the time range.',
      unit: UNITS.count,
      alertThreshold: 1,
      target: { expr: sumIncrease(settlements(['expired'])) },
    }),
    statPanel({
      title: 'Rejected spans',
      description: `Spans settlement refused (${REJECTED_SPAN_RESULTS.join(', ')}) over the time range.`,
      unit: UNITS.count,
      alertThreshold: 1,
      target: { expr: sumIncrease(settlements(REJECTED_SPAN_RESULTS)) },
    }),
  ],
};

const throughputRow = {
  title: 'Throughput and lag',
  panels: [
    timeseriesPanel({
      title: 'Settlements by result',
      description:
        'settled: first settlement from a span. corrected: a late span fixed an expired reservation. duplicate: a retried span, nothing changed. The rest are rejections and errors, below.',
      unit: UNITS.perSecond,
      stacked: true,
      targets: [{ expr: sumRate(METRIC_SETTLEMENTS, ['result']), legend: '{{result}}' }],
    }),
    timeseriesPanel({
      title: 'Settlement lag (p50, p99)',
      description:
        'From a billing span\'s end to its settlement: Collector batching, queueing and retries plus the ledger write. Held credits stay held meanwhile. The dashed line is TollgateSettlementLagHigh.',
      unit: UNITS.seconds,
      alertThreshold: ALERT_THRESHOLDS.TollgateSettlementLagHigh,
      targets: [
        { expr: quantile(0.5, METRIC_SETTLEMENT_LAG), legend: 'p50' },
        { expr: quantile(0.99, METRIC_SETTLEMENT_LAG), legend: 'p99' },
      ],
    }),
    timeseriesPanel({
      title: 'Credits settled, released and over-run',
      description:
        'settled: charged to accounts. released: reserved but not spent, returned. over-run: cost above the reservation (charged only under the "charge" over-run policy).',
      unit: UNITS.creditsPerHour,
      width: 24,
      targets: [
        { expr: perHour(sumRate(METRIC_SETTLED_CREDITS)), legend: 'settled' },
        { expr: perHour(sumRate(METRIC_RELEASED_CREDITS)), legend: 'released' },
        { expr: perHour(sumRate(METRIC_OVERRUN_CREDITS)), legend: 'over-run' },
      ],
    }),
  ],
};

const strandedRow = {
  title: 'Stranded reservations',
  panels: [
    timeseriesPanel({
      title: 'Open reservations',
      description: 'Grows with traffic; growing while traffic is flat means reservations are not ending (see the hold time).',
      unit: UNITS.count,
      width: 8,
      targets: [{ expr: OPEN_RESERVATIONS, legend: 'open' }],
    }),
    timeseriesPanel({
      title: 'Mean reservation hold time',
      description:
        'Open reservations / reservations made per second (Little\'s law): how long a reservation stays open on average, whatever the traffic. The dashed line is TollgateOpenReservationsPilingUp.',
      unit: UNITS.seconds,
      width: 8,
      alertThreshold: ALERT_THRESHOLDS.TollgateOpenReservationsPilingUp,
      targets: [
        {
          // Metered counts as 0 when no gateway has a metered series (all restarted, no request
          // since): +Inf, as in tollgate:reservation_hold_seconds:mean5m, not an empty panel.
          expr: `${OPEN_RESERVATIONS} / (${sumRate(selector(METRIC_REQUESTS, [METERED]))} or vector(0))`,
          legend: 'mean hold time',
        },
      ],
    }),
    timeseriesPanel({
      title: 'Expired, corrected and never-recorded',
      description:
        'expired: no span before the TTL, charged the full reservation. corrected: a late span then fixed it. unrecorded: billing spans a sampler dropped in the gateway; each will expire.',
      unit: UNITS.perSecond,
      width: 8,
      targets: [
        { expr: sumRate(settlements(['expired', 'corrected']), ['result']), legend: '{{result}}' },
        { expr: sumRate(METRIC_UNRECORDED_SPANS), legend: 'unrecorded (gateway)' },
      ],
    }),
  ],
};

const refusedRow = {
  title: 'Refused spans and errors',
  panels: [
    timeseriesPanel({
      title: 'Rejected spans by reason',
      description:
        'unknown_reservation: no such reservation (wrong ledger?). account_mismatch: the span names another account than the reservation (investigate). invalid: a required attribute is missing or mangled. invalid_signature: unsigned, altered, or signed with a key settlement does not have (tampering, or key rotation skew). unknown_pricing_version: the gateway priced with a table settlement does not have (deploy skew).',
      unit: UNITS.perSecond,
      width: 8,
      stacked: true,
      targets: [{ expr: sumRate(settlements(REJECTED_SPAN_RESULTS), ['result']), legend: '{{result}}' }],
    }),
    timeseriesPanel({
      title: 'Duplicate spans',
      description: 'Spans for reservations already settled from a span: Collector retries. Harmless (settlement is idempotent) unless it climbs with the lag.',
      unit: UNITS.perSecond,
      width: 8,
      targets: [{ expr: sumRate(settlements(['duplicate'])), legend: 'duplicate' }],
    }),
    timeseriesPanel({
      title: 'Settlement errors',
      description: 'Spans the ledger failed to apply; the sender was told to retry. Sustained errors mean the ledger is down or failing.',
      unit: UNITS.perSecond,
      width: 8,
      targets: [{ expr: sumRate(settlements(['error'])), legend: 'error' }],
    }),
  ],
};

const pipelineRow = {
  title: 'Pipeline: Collector and scrape targets',
  panels: [
    timeseriesPanel({
      title: 'Collector exporter queue',
      description: `Spans waiting in each exporter's sending_queue, and its capacity; ${BILLING_EXPORTER} is the persistent billing queue. It fills while settlement is down or slow. Empty unless the Collector's own metrics are scraped (job "${SCRAPE_JOBS.collector}").`,
      unit: UNITS.count,
      width: 8,
      targets: [
        { expr: `sum by (exporter) (${COLLECTOR_METRICS.queueSize})`, legend: 'size {{exporter}}' },
        { expr: `sum by (exporter) (${COLLECTOR_METRICS.queueCapacity})`, legend: 'capacity {{exporter}}' },
      ],
    }),
    timeseriesPanel({
      title: 'Collector spans dropped or refused',
      description: `send failed: spans an exporter dropped on a permanent error (for ${BILLING_EXPORTER}, e.g. a wrong settlement token): their reservations expire. enqueue failed: spans a full queue refused; the gateways retry them.`,
      unit: UNITS.perSecond,
      width: 8,
      targets: [
        { expr: sumRate(COLLECTOR_METRICS.sendFailedSpans, ['exporter']), legend: 'send failed {{exporter}}' },
        { expr: sumRate(COLLECTOR_METRICS.enqueueFailedSpans, ['exporter']), legend: 'enqueue failed {{exporter}}' },
      ],
    }),
    timeseriesPanel({
      title: 'Scrape targets up',
      description: 'Targets Prometheus scrapes successfully, per job. Zero settlement targets fires TollgateSettlementDown.',
      unit: UNITS.count,
      width: 8,
      targets: [
        {
          expr: `sum by (job) (up{job=~"${Object.values(SCRAPE_JOBS).join('|')}"})`,
          legend: '{{job}}',
        },
      ],
    }),
  ],
};

export function settlementHealth(): dashboard.Dashboard {
  return buildDashboard({
    uid: 'tollgate-settlement-health',
    title: 'Tollgate / Settlement health',
    description: 'Settlement throughput and lag, open and expired reservations, refused spans, ledger errors and the Collector queue.',
    variables: [prometheusDatasourceVariable()],
    rows: [nowRow, throughputRow, strandedRow, refusedRow, pipelineRow],
  });
}
