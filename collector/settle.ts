/**
 * Settles the billing spans of one OTLP request: each span becomes a settlement request
 * (records.ts), all of them are applied in ONE ledger transaction, and the outcomes are counted.
 */
import type { Ledger, OverrunPolicy, SettlementRequest } from '../ledger/types.js';
import type { SettlementMetrics } from './metrics.js';
import type { OtlpSpan } from './otlp.js';
import { toSettlement, type PricingCatalogue } from './records.js';

export interface SettleContext {
  ledger: Ledger;
  catalogue: PricingCatalogue;
  overrunPolicy: OverrunPolicy;
  metrics: SettlementMetrics;
}

export type BatchResult =
  /** Committed. `rejected` spans will never settle from this delivery; `messages` say why (a few). */
  | { ok: true; rejected: number; messages: string[] }
  /** The ledger failed: nothing was committed, the sender should retry. */
  | { ok: false; error: unknown };

/** How many rejection reasons a response spells out; the count covers them all. */
const MAX_MESSAGES = 10;

export async function settleSpans(spans: readonly OtlpSpan[], context: SettleContext): Promise<BatchResult> {
  const { ledger, catalogue, overrunPolicy, metrics } = context;
  const requests = new Map<string, SettlementRequest>();
  let duplicates = 0;
  const rejections: Array<{ result: 'invalid' | 'unknown_pricing_version' | 'unknown_reservation' | 'account_mismatch'; message: string }> = [];

  for (const span of spans) {
    const verdict = toSettlement(span, catalogue);
    if (verdict.kind === 'reject') {
      rejections.push(verdict);
    } else if (verdict.kind === 'settle') {
      // The same span twice in one delivery (a sender that retried into its own batch): the
      // first settles, the second is the duplicate it would be in a later delivery.
      if (requests.has(verdict.request.reservationId)) duplicates++;
      else requests.set(verdict.request.reservationId, verdict.request);
    }
  }

  if (requests.size > 0) {
    let outcomes;
    try {
      outcomes = await ledger.settle([...requests.values()], overrunPolicy);
    } catch (error) {
      metrics.count('error', requests.size);
      return { ok: false, error };
    }
    const committedAt = Date.now();
    for (const outcome of outcomes) {
      metrics.recordOutcome(outcome);
      const request = requests.get(outcome.reservationId)!;
      if (outcome.result === 'settled' || outcome.result === 'corrected') {
        metrics.observeLag(Math.max(0, committedAt - request.spanEndTime.getTime()) / 1000);
      } else if (outcome.result === 'unknown_reservation') {
        rejections.push({ result: outcome.result, message: `reservation ${outcome.reservationId} is unknown` });
      } else if (outcome.result === 'account_mismatch') {
        rejections.push({
          result: outcome.result,
          message: `reservation ${outcome.reservationId} does not belong to account ${request.accountId}`,
        });
      }
    }
  }

  if (duplicates > 0) metrics.count('duplicate', duplicates);
  for (const { result } of rejections) {
    // The ledger's own results were counted with its outcomes.
    if (result === 'invalid' || result === 'unknown_pricing_version') metrics.count(result);
  }
  return { ok: true, rejected: rejections.length, messages: rejections.slice(0, MAX_MESSAGES).map((r) => r.message) };
}
