/**
 * Signed billing spans. The gateway signs the attributes settlement bills from with an HMAC key it
 * shares with settlement; settlement rejects a billing span whose signature is missing or wrong.
 * So nobody who can send OTLP to settlement, or alter spans on the way (in a Collector, say),
 * can lower a charge: changing any signed attribute breaks the signature, and only the gateways
 * and settlement hold the key. Two keys can be valid at once (rotation): the span names its key.
 *
 * The signed payload is canonical: every attribute of SIGNED_ATTRIBUTES in that order, one
 * `name=value` line each, the value as JSON (an integer prints the same whether it came as an
 * OTLP int or, through OTLP/JSON, as an integral double), an absent one as nothing — so that
 * removing an attribute (a token count, say) breaks the signature too.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import {
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MODEL,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_TOLLGATE_ACCOUNT_ID,
  ATTR_TOLLGATE_OUTCOME,
  ATTR_TOLLGATE_PRICING_VERSION,
  ATTR_TOLLGATE_RESERVATION_AMOUNT,
  ATTR_TOLLGATE_RESERVATION_ID,
  ATTR_TOLLGATE_USAGE_SOURCE,
  USAGE_ATTRIBUTES,
} from './semconv.js';

export const SIGNED_ATTRIBUTES: readonly string[] = [
  ATTR_TOLLGATE_RESERVATION_ID,
  ATTR_TOLLGATE_ACCOUNT_ID,
  ATTR_TOLLGATE_RESERVATION_AMOUNT,
  ATTR_TOLLGATE_OUTCOME,
  ATTR_TOLLGATE_USAGE_SOURCE,
  ATTR_TOLLGATE_PRICING_VERSION,
  ATTR_HTTP_RESPONSE_STATUS_CODE,
  ATTR_GEN_AI_PROVIDER_NAME,
  ATTR_GEN_AI_REQUEST_MODEL,
  ...USAGE_ATTRIBUTES.map(([, name]) => name),
];

export interface SigningKey {
  /** Named on each span, so that settlement knows which of its keys to check with. */
  id: string;
  secret: string;
}

/** At least 128 bits of key; an id without the separator used on the command line. */
export function checkSigningKey(key: SigningKey, option: string): void {
  if (!/^[\w.-]{1,64}$/.test(key.id)) throw new RangeError(`${option}: key id must be 1-64 of [A-Za-z0-9_.-], got ${JSON.stringify(key.id)}`);
  if (Buffer.byteLength(key.secret) < 16) throw new RangeError(`${option}: key ${key.id}'s secret must be at least 16 bytes`);
}

/** Parses `ID:SECRET[,ID:SECRET…]` (environment variables of the CLI). */
export function parseSigningKeys(text: string, option: string): SigningKey[] {
  return text
    .split(',')
    .filter((entry) => entry !== '')
    .map((entry) => {
      const at = entry.indexOf(':');
      const key = { id: at < 0 ? '' : entry.slice(0, at), secret: at < 0 ? '' : entry.slice(at + 1) };
      checkSigningKey(key, option);
      return key;
    });
}

export function signature(get: (name: string) => unknown, secret: string): string {
  const payload = SIGNED_ATTRIBUTES.map((name) => {
    const value = get(name);
    return `${name}=${value === undefined ? '' : JSON.stringify(value)}\n`;
  }).join('');
  return createHmac('sha256', secret).update(payload).digest('base64url');
}

/** Constant-time comparison of a span's signature with the one its attributes should carry. */
export function verifySignature(get: (name: string) => unknown, claimed: string, secret: string): boolean {
  const expected = Buffer.from(signature(get, secret));
  const given = Buffer.from(claimed);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
