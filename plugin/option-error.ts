/**
 * Options are validated once, at construction, by every part (the middleware, settlement): a
 * bad value fails fast with an error that names the option and the value. The shared shape.
 */

/** An option error with a stable `code` per part, naming the option, what it must be and what it was. */
export abstract class OptionError extends Error {
  abstract readonly code: string;
  constructor(
    part: string,
    readonly option: string,
    value: unknown,
    expected: string,
  ) {
    super(`${part}: option ${option} must be ${expected}, got ${describeValue(value)}`);
  }
}

type OptionErrorClass = new (option: string, value: unknown, expected: string) => OptionError;

/** `value` if it is a positive safe integer, `fallback` if it is undefined; else throws `Fail`. */
export function positiveIntegerOption(Fail: OptionErrorClass, name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw new Fail(name, value, 'a positive integer');
  return value;
}

/** A value as an error message shows it: strings quoted, objects by their kind (never their content). */
function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) return String(value);
  if (Array.isArray(value)) return `an array of ${value.length}`;
  return typeof value;
}
