/**
 * "Tollgate / Billing overview": what the gateway reserved, what the usage cost, what settlement
 * charged, and the request outcomes that make those differ. Gateway metrics carry provider and
 * model labels (filterable with the variables); settlement metrics carry neither.
 */
import type * as dashboard from '@grafana/grafana-foundation-sdk/dashboard';
import {
  METRIC_COST_CREDITS,
  METRIC_OVERRUNS,
  METRIC_PARSE_ERRORS,
  METRIC_REQUESTS,
  METRIC_REQUEST_DURATION,
  METRIC_RESERVATION_REJECTIONS,
  METRIC_RESERVED_CREDITS,
  METRIC_SETTLED_CREDITS,
  METRIC_TELEMETRY_ERRORS,
  METRIC_TIME_TO_FIRST_BYTE,
  METRIC_USAGE_MISSING,
  METRIC_USAGE_TOKENS,
} from '../plugin/semconv.js';
import { ALERT_THRESHOLDS } from './alert-thresholds.js';
import {
  UNITS,
  buildDashboard,
  labelFilterVariable,
  prometheusDatasourceVariable,
  statPanel,
  timeseriesPanel,
  type PromTarget,
} from './panels.js';
import {
  METERED,
  MODEL_FILTER,
  PROVIDER_FILTER,
  SERVED,
  is,
  isOneOf,
  perHour,
  quantile,
  ratio,
  selector,
  sumIncrease,
  sumRate,
} from './promql.js';

const BY_MODEL = ['provider', 'model'] as const;
const MODEL_LEGEND = '{{provider}} / {{model}}';
/** Gateway series with provider and model labels, narrowed by the dashboard's variables. */
const FILTERED = [PROVIDER_FILTER, MODEL_FILTER];

function meteredRequests(by: readonly string[]): string {
  return sumRate(selector(METRIC_REQUESTS, [...FILTERED, METERED]), by);
}

function servedRequests(by: readonly string[]): string {
  return sumRate(selector(METRIC_REQUESTS, [...FILTERED, SERVED]), by);
}

function quantiles(histogram: string, matchers: string[]): PromTarget[] {
  return [0.5, 0.99].map((q) => ({
    expr: quantile(q, histogram, { by: ['provider'], matchers }),
    legend: `p${q * 100} {{provider}}`,
  }));
}

const creditsRow = {
  title: 'Credits: reserved, priced, settled',
  panels: [
    statPanel({
      title: 'Reserved',
      description: 'Credits the gateway held before forwarding requests, over the time range.',
      unit: UNITS.credits,
      target: { expr: sumIncrease(selector(METRIC_RESERVED_CREDITS, FILTERED)) },
    }),
    statPanel({
      title: 'Priced cost',
      description: 'What the reported usage costs under the gateway pricing table, over the time range.',
      unit: UNITS.credits,
      target: { expr: sumIncrease(selector(METRIC_COST_CREDITS, FILTERED)) },
    }),
    statPanel({
      title: 'Settled (all providers)',
      description:
        'Credits the settlement processor charged over the time range. Not split by provider or model: compare with the filters at All.',
      unit: UNITS.credits,
      target: { expr: sumIncrease(METRIC_SETTLED_CREDITS) },
    }),
    statPanel({
      title: 'Estimate accuracy',
      description:
        'Priced cost / reserved over the time range. Low: estimates over-reserve and hold customers\' credits needlessly. Above 100%: over-runs.',
      unit: UNITS.ratio,
      target: {
        expr: `${sumIncrease(selector(METRIC_COST_CREDITS, FILTERED))} / ${sumIncrease(selector(METRIC_RESERVED_CREDITS, FILTERED))}`,
      },
    }),
    timeseriesPanel({
      title: 'Reserved vs priced cost vs settled',
      description:
        'Reserved and priced cost come from the gateway (filtered); settled from the settlement processor (never filtered). Settled lags priced cost by the settlement lag; a lasting gap means spans do not reach settlement.',
      unit: UNITS.creditsPerHour,
      width: 24,
      targets: [
        { expr: perHour(sumRate(selector(METRIC_RESERVED_CREDITS, FILTERED))), legend: 'reserved' },
        { expr: perHour(sumRate(selector(METRIC_COST_CREDITS, FILTERED))), legend: 'priced cost' },
        { expr: perHour(sumRate(METRIC_SETTLED_CREDITS)), legend: 'settled (all providers)' },
      ],
    }),
    timeseriesPanel({
      title: 'Reserved by model',
      description: 'Credits held per hour, by provider and model.',
      unit: UNITS.creditsPerHour,
      targets: [{ expr: perHour(sumRate(selector(METRIC_RESERVED_CREDITS, FILTERED), BY_MODEL)), legend: MODEL_LEGEND }],
    }),
    timeseriesPanel({
      title: 'Priced cost by model',
      description: 'What the reported usage costs per hour, by provider and model.',
      unit: UNITS.creditsPerHour,
      targets: [{ expr: perHour(sumRate(selector(METRIC_COST_CREDITS, FILTERED), BY_MODEL)), legend: MODEL_LEGEND }],
    }),
  ],
};

const outcomesRow = {
  title: 'Estimates and outcomes',
  panels: [
    timeseriesPanel({
      title: 'Estimate accuracy by model (cost / reserved)',
      description:
        'Near 100%: the estimate is tight. Far below: the model\'s max-token default or price over-reserves. Above 100%: the estimate is not an upper bound (see over-run rate).',
      unit: UNITS.ratio,
      targets: [
        {
          expr: `${sumRate(selector(METRIC_COST_CREDITS, FILTERED), BY_MODEL)} / ${sumRate(selector(METRIC_RESERVED_CREDITS, FILTERED), BY_MODEL)}`,
          legend: MODEL_LEGEND,
        },
      ],
    }),
    timeseriesPanel({
      title: 'Requests by outcome',
      description: 'Terminal outcome of every metered request; rejected = refused before reserving (see rejections).',
      unit: UNITS.perSecond,
      stacked: true,
      targets: [{ expr: sumRate(selector(METRIC_REQUESTS, FILTERED), ['outcome']), legend: '{{outcome}}' }],
    }),
    timeseriesPanel({
      title: 'Over-run rate',
      description:
        'Share of served requests whose priced cost exceeded the reservation: the estimate was not an upper bound. The dashed line is TollgateOverrunRateHigh.',
      unit: UNITS.ratio,
      width: 8,
      alertThreshold: ALERT_THRESHOLDS.TollgateOverrunRateHigh,
      targets: [
        { expr: ratio(sumRate(selector(METRIC_OVERRUNS, FILTERED), BY_MODEL), servedRequests(BY_MODEL)), legend: MODEL_LEGEND },
      ],
    }),
    timeseriesPanel({
      title: 'Cancel rate',
      description:
        'Share of metered requests the client cancelled mid-response. A rise on one provider often means it got slow. The dashed line is TollgateCancelRateHigh.',
      unit: UNITS.ratio,
      width: 8,
      alertThreshold: ALERT_THRESHOLDS.TollgateCancelRateHigh,
      targets: [
        {
          expr: ratio(sumRate(selector(METRIC_REQUESTS, [...FILTERED, is('outcome', 'cancelled')]), ['provider']), meteredRequests(['provider'])),
          legend: '{{provider}}',
        },
      ],
    }),
    timeseriesPanel({
      title: 'Usage-missing rate',
      description:
        'Share of served (2xx) requests whose response carried no usage: they settle at the full reservation. Usually a provider changed its stream format. The dashed line is TollgateUsageMissingRateHigh.',
      unit: UNITS.ratio,
      width: 8,
      alertThreshold: ALERT_THRESHOLDS.TollgateUsageMissingRateHigh,
      targets: [
        { expr: ratio(sumRate(selector(METRIC_USAGE_MISSING, FILTERED), BY_MODEL), servedRequests(BY_MODEL)), legend: MODEL_LEGEND },
      ],
    }),
  ],
};

const rejectionsRow = {
  title: 'Rejections (402)',
  panels: [
    timeseriesPanel({
      title: '402 share of reservation attempts',
      description:
        'Requests refused with 402 (insufficient credits) / all requests that asked for a reservation. Not split by provider or model. TollgateInsufficientCreditsSpike fires above the dashed line AND at 3× the last day\'s average.',
      unit: UNITS.ratio,
      alertThreshold: ALERT_THRESHOLDS.TollgateInsufficientCreditsSpike,
      targets: [
        {
          expr: ratio(
            sumRate(selector(METRIC_RESERVATION_REJECTIONS, [is('reason', 'insufficient_credits')])),
            // Metered counts as 0 when no gateway has a metered series (all restarted, every
            // request refused since), as in tollgate:insufficient_credits_ratio:rate5m.
            `((${sumRate(selector(METRIC_REQUESTS, [METERED]))} or vector(0)) + ${sumRate(METRIC_RESERVATION_REJECTIONS)})`,
          ),
          legend: '402 share',
        },
      ],
    }),
    timeseriesPanel({
      title: 'Rejections by reason',
      description:
        'Requests refused before a reservation was made. insufficient_credits is the 402; ledger_unavailable means the ledger could not be reached (fail closed).',
      unit: UNITS.perSecond,
      stacked: true,
      targets: [{ expr: sumRate(METRIC_RESERVATION_REJECTIONS, ['reason']), legend: '{{reason}}' }],
    }),
  ],
};

const tokensRow = {
  title: 'Tokens',
  panels: [
    timeseriesPanel({
      title: 'Tokens by type',
      description:
        'Reported tokens per second. input and output are totals; cache_read and cache_creation are parts of input, reasoning a part of output (so the series are not stacked).',
      unit: UNITS.tokensPerSecond,
      targets: [{ expr: sumRate(selector(METRIC_USAGE_TOKENS, FILTERED), ['type']), legend: '{{type}}' }],
    }),
    timeseriesPanel({
      title: 'Input and output tokens by model',
      description: 'Reported input and output tokens per second, by provider and model.',
      unit: UNITS.tokensPerSecond,
      targets: [
        {
          expr: sumRate(selector(METRIC_USAGE_TOKENS, [...FILTERED, isOneOf('type', ['input', 'output'])]), [...BY_MODEL, 'type']),
          legend: `${MODEL_LEGEND} {{type}}`,
        },
      ],
    }),
  ],
};

const latencyRow = {
  title: 'Latency',
  panels: [
    timeseriesPanel({
      title: 'Time to first byte (p50, p99)',
      description: 'From request arrival to the first response byte from the upstream, by provider.',
      unit: UNITS.seconds,
      targets: quantiles(METRIC_TIME_TO_FIRST_BYTE, [PROVIDER_FILTER]),
    }),
    timeseriesPanel({
      title: 'Duration of completed requests (p50, p99)',
      description: 'From request arrival to the end of the response, completed requests only, by provider.',
      unit: UNITS.seconds,
      targets: quantiles(METRIC_REQUEST_DURATION, [PROVIDER_FILTER, is('outcome', 'completed')]),
    }),
  ],
};

const meteringHealthRow = {
  title: 'Metering health',
  panels: [
    timeseriesPanel({
      title: 'Usage parse errors',
      description:
        'Response frames the usage parser gave up on (oversized or malformed), by provider. The client still got the bytes; the usage may be missing.',
      unit: UNITS.perSecond,
      targets: [{ expr: sumRate(selector(METRIC_PARSE_ERRORS, [PROVIDER_FILTER]), ['provider']), legend: '{{provider}}' }],
    }),
    timeseriesPanel({
      title: 'Telemetry errors',
      description: 'Errors thrown by span or metric calls in the gateway; the requests went on, their metering may be incomplete.',
      unit: UNITS.perSecond,
      targets: [{ expr: sumRate(METRIC_TELEMETRY_ERRORS), legend: 'telemetry errors' }],
    }),
  ],
};

export function billingOverview(): dashboard.Dashboard {
  return buildDashboard({
    uid: 'tollgate-billing-overview',
    title: 'Tollgate / Billing overview',
    description: 'Credits reserved, priced and settled; estimate accuracy, over-runs, cancels, missing usage, 402s, tokens and latency.',
    variables: [
      prometheusDatasourceVariable(),
      labelFilterVariable('provider', METRIC_REQUESTS),
      labelFilterVariable('model', selector(METRIC_REQUESTS, [PROVIDER_FILTER])),
    ],
    rows: [creditsRow, outcomesRow, rejectionsRow, tokensRow, latencyRow, meteringHealthRow],
  });
}
