/**
 * A billing span → a settlement request (ledger/types.ts).
 *
 * A billing span is one that carries `tollgate.reservation.id`; any other span is ignored, not
 * rejected (the Collector may route a whole trace here). A billing span that lacks a required
 * attribute or mangles one is rejected as `invalid`: it is never guessed at, and its
 * reservation is then settled by the sweeper at the reserved amount.
 *
 * The cost:
 * - `tollgate.usage.source` = reported → costOf(the gen_ai.usage.* counts) under the span's
 *   pricing version, for the span's `gen_ai.request.model` (the model the gateway priced the
 *   reservation with). Both totals, input and output tokens, must be present: a usage with a
 *   total missing cannot be priced without under-charging.
 * - missing → null (the ledger charges the reserved amount), except for outcome
 *   `upstream_error` without a 2xx `http.response.status_code`: the upstream never served the
 *   request, so it costs 0.
 *
 * Pricing versions. A span is priced with the very table its gateway reserved with, named by
 * `tollgate.pricing.version` (a content hash). Settlement holds a catalogue of every table it was
 * given; a span whose usage must be priced under a version not in the catalogue is rejected as
 * `unknown_pricing_version` and NEVER priced from another table: a different table could
 * under-charge, and the error would be silent. Its reservation is settled by the sweeper at the
 * reserved amount (never an under-charge), and the counter tells the operator to give settlement
 * the gateway's pricing file. A span whose cost does not depend on prices (usage missing) is
 * settled whatever its version.
 */
import { LedgerError } from '../ledger/errors.js';
import type { SettlementRequest } from '../ledger/types.js';
import { settlementRequest as validateSettlementRequest } from '../ledger/validate.js';
import { costOf, type PricingTable } from '../plugin/pricing.js';
import {
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_GEN_AI_USAGE_OUTPUT_TOKENS,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_TOLLGATE_ACCOUNT_ID,
  ATTR_TOLLGATE_OUTCOME,
  ATTR_TOLLGATE_PRICING_VERSION,
  ATTR_TOLLGATE_RESERVATION_AMOUNT,
  ATTR_TOLLGATE_RESERVATION_ID,
  ATTR_TOLLGATE_SIGNATURE,
  ATTR_TOLLGATE_SIGNATURE_KEY_ID,
  ATTR_TOLLGATE_USAGE_SOURCE,
  OUTCOMES,
  USAGE_ATTRIBUTES,
  USAGE_SOURCES,
  type Outcome,
  type UsageSource,
} from '../plugin/semconv.js';
import { SIGNED_ATTRIBUTES, verifySignature } from '../plugin/signing.js';
import type { Usage } from '../plugin/usage/types.js';
import { AttributeKeys, type AttributeValue, type OtlpSpan } from './otlp.js';

/** Pricing tables by version. */
export type PricingCatalogue = ReadonlyMap<string, PricingTable>;

export function pricingCatalogue(tables: Iterable<PricingTable>): PricingCatalogue {
  return new Map([...tables].map((table) => [table.version, table]));
}

export type SpanRejection = 'invalid' | 'invalid_signature' | 'unknown_pricing_version';

export type SpanVerdict =
  | { kind: 'settle'; request: SettlementRequest }
  | { kind: 'reject'; result: SpanRejection; message: string }
  | { kind: 'ignore' };

/**
 * Every attribute settlement reads: what the gateway signs, and the signature itself. What the
 * decoder keeps of a span.
 */
export const SETTLEMENT_ATTRIBUTES = new AttributeKeys([...SIGNED_ATTRIBUTES, ATTR_TOLLGATE_SIGNATURE, ATTR_TOLLGATE_SIGNATURE_KEY_ID]);

/** The keys billing spans must be signed with, by id; empty: spans are not required to be signed. */
export type SigningKeys = ReadonlyMap<string, string>;

class InvalidSpan extends Error {}

export function toSettlement(span: OtlpSpan, catalogue: PricingCatalogue, signingKeys: SigningKeys = new Map()): SpanVerdict {
  const attributes = span.attributes;
  if (!attributes.has(ATTR_TOLLGATE_RESERVATION_ID)) return { kind: 'ignore' };
  if (signingKeys.size > 0) {
    const problem = signatureProblem(attributes, signingKeys);
    if (problem !== undefined) return reject(span, 'invalid_signature', problem);
  }
  try {
    const reservationId = text(attributes, ATTR_TOLLGATE_RESERVATION_ID);
    const accountId = text(attributes, ATTR_TOLLGATE_ACCOUNT_ID);
    // Not used to settle (the ledger knows what it reserved), but a span without a sound amount
    // is not one the gateway wrote.
    integer(attributes, ATTR_TOLLGATE_RESERVATION_AMOUNT);
    const outcome = oneOf<Outcome>(attributes, ATTR_TOLLGATE_OUTCOME, OUTCOMES);
    const source = oneOf<UsageSource>(attributes, ATTR_TOLLGATE_USAGE_SOURCE, USAGE_SOURCES);
    const pricingVersion = text(attributes, ATTR_TOLLGATE_PRICING_VERSION);
    const status = attributes.has(ATTR_HTTP_RESPONSE_STATUS_CODE) ? integer(attributes, ATTR_HTTP_RESPONSE_STATUS_CODE) : undefined;
    if (!(span.endTimeMs > 0)) throw new InvalidSpan('has no end time');
    const base = { reservationId, accountId, outcome, pricingVersion, spanEndTime: new Date(span.endTimeMs) };

    let request: SettlementRequest;
    if (source === 'missing') {
      const served = status !== undefined && status >= 200 && status < 300;
      request = { ...base, cost: outcome === 'upstream_error' && !served ? 0 : null, usage: null };
    } else {
      const usage = readUsage(attributes);
      const table = catalogue.get(pricingVersion);
      if (!table) {
        return reject(span, 'unknown_pricing_version', `pricing version ${pricingVersion} is not one settlement was given`);
      }
      const model = text(attributes, ATTR_GEN_AI_REQUEST_MODEL);
      const provider = attributes.get(ATTR_GEN_AI_PROVIDER_NAME);
      const price = table.price(model, typeof provider === 'string' ? provider : undefined);
      if (!price) throw new InvalidSpan(`model ${model} has no price in pricing version ${pricingVersion}`);
      request = { ...base, cost: costOf(usage, price), usage: { ...usage } };
    }
    // The ledger refuses a whole batch over one request it finds malformed (an id longer than it
    // stores, say), which would block every span behind it in the sender's queue: judge each span
    // by the ledger's own rules here, so that a bad one is rejected alone.
    validateSettlementRequest(request, 0);
    return { kind: 'settle', request };
  } catch (error) {
    // InvalidSpan from the readers; RangeError from costOf for a cost beyond the safe range;
    // LedgerError from the ledger's validation.
    if (error instanceof InvalidSpan || error instanceof RangeError || error instanceof LedgerError) {
      return reject(span, 'invalid', error.message);
    }
    throw error;
  }
}

/** Why a span's signature does not hold, or undefined when it does. */
function signatureProblem(attributes: ReadonlyMap<string, AttributeValue>, keys: SigningKeys): string | undefined {
  const claimed = attributes.get(ATTR_TOLLGATE_SIGNATURE);
  const keyId = attributes.get(ATTR_TOLLGATE_SIGNATURE_KEY_ID);
  if (typeof claimed !== 'string' || typeof keyId !== 'string') return 'is not signed';
  const secret = keys.get(keyId);
  if (secret === undefined) return `is signed with key ${JSON.stringify(keyId)}, which settlement does not have`;
  return verifySignature((name) => attributes.get(name), claimed, secret) ? undefined : 'has a signature that does not match its attributes';
}

function reject(span: OtlpSpan, result: SpanRejection, reason: string): SpanVerdict {
  return { kind: 'reject', result, message: `span ${span.spanId || '(no id)'}: ${reason}` };
}

function readUsage(attributes: ReadonlyMap<string, AttributeValue>): Usage {
  const usage: Usage = {};
  for (const [field, name] of USAGE_ATTRIBUTES) {
    if (attributes.has(name)) usage[field] = integer(attributes, name);
  }
  for (const name of [ATTR_GEN_AI_USAGE_INPUT_TOKENS, ATTR_GEN_AI_USAGE_OUTPUT_TOKENS]) {
    if (!attributes.has(name)) throw new InvalidSpan(`usage is reported but ${name} is missing`);
  }
  return usage;
}

function text(attributes: ReadonlyMap<string, AttributeValue>, name: string): string {
  const value = attributes.get(name);
  if (value === undefined) throw new InvalidSpan(`${name} is missing`);
  if (typeof value !== 'string' || value === '') throw new InvalidSpan(`${name} must be a non-empty string, got ${show(value)}`);
  return value;
}

/** A non-negative safe integer (a double with an integral value is accepted: JSON has no int type). */
function integer(attributes: ReadonlyMap<string, AttributeValue>, name: string): number {
  const value = attributes.get(name);
  if (value === undefined) throw new InvalidSpan(`${name} is missing`);
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new InvalidSpan(`${name} must be a non-negative integer, got ${show(value)}`);
  }
  return value;
}

function oneOf<T extends string>(attributes: ReadonlyMap<string, AttributeValue>, name: string, allowed: readonly T[]): T {
  const value = text(attributes, name);
  if (!(allowed as readonly string[]).includes(value)) {
    throw new InvalidSpan(`${name} must be one of ${allowed.join(', ')}, got ${show(value)}`);
  }
  return value as T;
}

function show(value: AttributeValue): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
