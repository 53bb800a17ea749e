/**
 * Credits ↔ micro-credits, exactly.
 *
 * The ledger counts integer micro-credits (1 credit = 1,000,000 micro-credits) held in JS numbers
 * that must stay safe integers. People type credits as decimals ("12.5"). Converting through a
 * float would turn 0.1 + 0.2 into 300000.00000000006 micro-credits, so the conversion is done on
 * the decimal string, and there is no rounding: a value finer than one micro-credit is rejected.
 */

export const MICROS_PER_CREDIT = 1_000_000;
/** Decimal places of a credit amount: one micro-credit is 0.000001 credit. */
export const CREDIT_DECIMALS = 6;

const DECIMAL = /^(\d+)(?:\.(\d+))?$/;

/** True for a safe integer: the only numbers that may hold micro-credits. */
export function isMicros(value: unknown): value is number {
  return Number.isSafeInteger(value);
}

/**
 * Parses a non-negative decimal number of credits ("12", "12.5", "0.000001") into micro-credits.
 * `name` is what the error messages call the value (e.g. "--credits").
 */
export function creditsToMicros(credits: string, name = 'credits'): number {
  const text = credits.trim();
  if (text.startsWith('-')) {
    throw new RangeError(`${name} must not be negative, got ${JSON.stringify(credits)}`);
  }
  const match = DECIMAL.exec(text);
  if (match === null) {
    throw new RangeError(`${name} must be a decimal number of credits such as 12 or 12.5, got ${JSON.stringify(credits)}`);
  }
  const [, whole, fraction = ''] = match;
  if (fraction.length > CREDIT_DECIMALS) {
    throw new RangeError(
      `${name} has more than ${CREDIT_DECIMALS} decimal places (1 micro-credit = 0.000001 credit), got ${JSON.stringify(credits)}`,
    );
  }
  // Whole credits and the fraction padded to six digits, concatenated: "12.5" → "12" + "500000".
  const micros = Number(whole + fraction.padEnd(CREDIT_DECIMALS, '0'));
  if (!isMicros(micros)) {
    throw new RangeError(`${name} is too large (at most ${microsToCredits(Number.MAX_SAFE_INTEGER)} credits), got ${JSON.stringify(credits)}`);
  }
  return micros;
}

/** Formats micro-credits as an exact decimal number of credits: 12500000 → "12.5", -1 → "-0.000001". */
export function microsToCredits(micros: number): string {
  if (!isMicros(micros)) throw new RangeError(`micro-credits must be a safe integer, got ${micros}`);
  const magnitude = Math.abs(micros);
  // `%` and the division below are exact: both operands are integers and the division has no remainder.
  const fraction = magnitude % MICROS_PER_CREDIT;
  const whole = (magnitude - fraction) / MICROS_PER_CREDIT;
  const digits = fraction === 0 ? '' : '.' + String(fraction).padStart(CREDIT_DECIMALS, '0').replace(/0+$/, '');
  return `${micros < 0 ? '-' : ''}${whole}${digits}`;
}
