/**
 * The settlement metrics (names in plugin/semconv.ts), on the registry the application gives.
 *
 * The credit counters count credits (micro-credits / 1e6) so that Prometheus shows credits, but
 * money is never accumulated in floating point here: the totals are kept as integer
 * micro-credits and converted once, when scraped.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { MICROS_PER_CREDIT } from '../ledger/money.js';
import type { SettlementOutcome } from '../ledger/types.js';
import { tallyCounter } from '../plugin/metrics.js';
import {
  METRIC_OPEN_RESERVATIONS,
  METRIC_OVERRUN_CREDITS,
  METRIC_RELEASED_CREDITS,
  METRIC_SETTLED_CREDITS,
  METRIC_SETTLEMENT_LAG,
  METRIC_SETTLEMENTS,
  SETTLEMENT_RESULTS,
  type SettlementResultLabel,
} from '../plugin/semconv.js';

// From a span ending to its settlement committing: sub-second in steady state, minutes while the
// Collector's queue drains after an outage, up to a reservation TTL for late spans.
const LAG_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

export interface SettlementMetrics {
  /** Counts `n` spans or reservations under `result`. */
  count(result: SettlementResultLabel, n?: number): void;
  /** Records one ledger outcome: its result, and for a first settlement or a correction its credits. */
  recordOutcome(outcome: SettlementOutcome): void;
  observeLag(seconds: number): void;
  setOpenReservations(count: number): void;
}

const byRegistry = new WeakMap<Registry, SettlementMetrics>();

/**
 * The settlement metrics of `registry`, registered on first use: the server and the sweeper of
 * one process share them (prom-client refuses a name registered twice).
 */
export function settlementMetrics(registry: Registry): SettlementMetrics {
  let metrics = byRegistry.get(registry);
  if (!metrics) {
    metrics = createSettlementMetrics(registry);
    byRegistry.set(registry, metrics);
  }
  return metrics;
}

function createSettlementMetrics(registry: Registry): SettlementMetrics {
  const registers = [registry];
  const settlements = new Counter({
    name: METRIC_SETTLEMENTS,
    help: 'Settlement results: per reservation (settled, corrected, duplicate, expired, unknown_reservation, account_mismatch) or per span (invalid, invalid_signature, unknown_pricing_version, error).',
    labelNames: ['result'] as const,
    registers,
  });
  const credits = (name: string, help: string) => tallyCounter(registry, { name, help, unit: MICROS_PER_CREDIT }).series({});
  const settled = credits(METRIC_SETTLED_CREDITS, 'Credits charged by settlements from spans.');
  const released = credits(METRIC_RELEASED_CREDITS, 'Reserved credits released by settlements from spans.');
  const overrun = credits(
    METRIC_OVERRUN_CREDITS,
    'Cost above the reservation, recorded under either over-run policy (charged only under "charge").',
  );
  const lag = new Histogram({
    name: METRIC_SETTLEMENT_LAG,
    help: 'Seconds from a billing span ending to its settlement committing.',
    buckets: LAG_BUCKETS,
    registers,
  });
  const open = new Gauge({
    name: METRIC_OPEN_RESERVATIONS,
    help: 'Reservations not yet settled, as of the last sweep.',
    registers,
  });
  // A labelled series exists only from its first increment, which rate()/increase() never
  // count: start every known result at 0 so that a first rejection or error shows.
  for (const result of SETTLEMENT_RESULTS) settlements.inc({ result }, 0);
  return {
    count: (result, n = 1) => settlements.inc({ result }, n),
    recordOutcome(outcome) {
      settlements.inc({ result: outcome.result });
      // A duplicate changed nothing; unknown and mismatched reservations charged nothing.
      if (outcome.result === 'settled' || outcome.result === 'corrected') {
        settled.add(outcome.charged);
        released.add(outcome.released);
        overrun.add(outcome.overrun);
      }
    },
    observeLag: (seconds) => lag.observe(seconds),
    setOpenReservations: (count) => open.set(count),
  };
}
