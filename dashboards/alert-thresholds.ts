/**
 * Thresholds of the alerts in alerts.yaml that the dashboards draw as dashed red lines, so that
 * the on-call person sees how far a series is from paging. test/dashboards/alerts.test.ts fails
 * when a value here and the `> value` in the alert's expression disagree.
 */
export const ALERT_THRESHOLDS = {
  /** Share of served requests whose priced cost exceeded the reservation. */
  TollgateOverrunRateHigh: 0.01,
  /** Share of metered requests the client cancelled. */
  TollgateCancelRateHigh: 0.1,
  /** Share of served (2xx) requests without usage: settled at the full reservation. */
  TollgateUsageMissingRateHigh: 0.05,
  /** p99 seconds from a billing span's end to its settlement. */
  TollgateSettlementLagHigh: 120,
  /** Mean seconds a reservation stays open (open reservations / reservation rate). */
  TollgateOpenReservationsPilingUp: 600,
  /** Share of reservation attempts refused with 402 (the alert also wants 3× the last day). */
  TollgateInsufficientCreditsSpike: 0.05,
} as const;

export type AlertName = keyof typeof ALERT_THRESHOLDS;
