/**
 * Settles the billing spans of one OTLP request: each span becomes a settlement request
 * (records.ts), all of them are applied in ONE ledger transaction (shared with the requests that
 * arrived meanwhile: group-commit.ts), and the outcomes are counted.
 */
import type { SettlementRequest } from '../ledger/types.js';
import type { Settle } from './group-commit.js';
import type { SettlementMetrics } from './metrics.js';
import type { OtlpSpan } from './otlp.js';
import { toSettlement, type PricingCatalogue, type SigningKeys, type SpanRejection } from './records.js';

export interface SettleContext {
  settle: Settle;
  catalogue: PricingCatalogue;
  signingKeys: SigningKeys;
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
  const { settle, catalogue, signingKeys, metrics } = context;
  const requests: SettlementRequest[] = [];
  const messages: string[] = [];
  const spanRejections: SpanRejection[] = [];
  for (const span of spans) {
    const verdict = toSettlement(span, catalogue, signingKeys);
    if (verdict.kind === 'settle') {
      requests.push(verdict.request);
    } else if (verdict.kind === 'reject') {
      spanRejections.push(verdict.result);
      messages.push(verdict.message);
    }
  }

  if (requests.length > 0) {
    let outcomes;
    try {
      // The same reservation twice in one batch (a sender that retried into its own queue) is
      // the ledger's to judge: the first settles, the next are duplicates.
      outcomes = await settle(requests);
    } catch (error) {
      metrics.count('error', requests.length);
      return { ok: false, error };
    }
    const committedAt = Date.now();
    outcomes.forEach((outcome, i) => {
      const request = requests[i]!;
      metrics.recordOutcome(outcome);
      if (outcome.result === 'settled' || outcome.result === 'corrected') {
        metrics.observeLag(Math.max(0, committedAt - request.spanEndTime.getTime()) / 1000);
      } else if (outcome.result === 'unknown_reservation') {
        messages.push(`reservation ${request.reservationId} is unknown`);
      } else if (outcome.result === 'account_mismatch') {
        messages.push(`reservation ${request.reservationId} does not belong to account ${request.accountId}`);
      }
    });
  }

  // Counted once the batch is committed, so that a retried delivery does not count them twice.
  for (const result of spanRejections) metrics.count(result);
  return { ok: true, rejected: messages.length, messages: messages.slice(0, MAX_MESSAGES) };
}
