/**
 * Reads the few members of a JSON object that a caller names, without building the rest.
 *
 * Why by hand: an OpenAI Responses stream ends with an event that repeats the whole response
 * (every output item, all its text: often megabytes), and the usage is one small member of it.
 * JSON.parse would build all of it on the gateway's event loop, stalling every other stream the
 * gateway serves meanwhile, to read a handful of numbers. Here the skipped values are only
 * delimited: a string by searching for its closing quote (memchr-fast on long text), an object or
 * array by counting brackets outside strings. Only the values named are decoded.
 *
 * Strictness: the named values are read as JSON.parse reads them (by JSON.parse itself, plain
 * strings aside), and the punctuation on the way to them is checked as JSON.parse would; a
 * skipped value is only delimited (`{"a": tru, "usage": {…}}` reads usage). A document cut short
 * always throws, wherever it is cut.
 */

/** The members to read: `true` for a whole value, a nested shape to read only some of an object's. */
export interface JsonShape {
  readonly [member: string]: true | JsonShape;
}

interface MutableShape {
  [member: string]: true | MutableShape;
}

/**
 * The shape that reads the values at these paths (as `get` in common.ts walks them) and no more.
 * A path that reads a whole value covers the longer ones under it.
 */
export function shapeOfPaths(paths: Iterable<readonly string[]>): JsonShape {
  const shape: MutableShape = {};
  for (const path of paths) {
    let level = shape;
    for (const [depth, name] of path.entries()) {
      if (depth === path.length - 1) {
        level[name] = true;
        break;
      }
      const inner = level[name];
      if (inner === true) break;
      level = level[name] = inner ?? {};
    }
  }
  return shape;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

/**
 * The JSON document in `data` with only the members in `shape` (at any depth the shape gives),
 * as JSON.parse would read them; the last of duplicate keys wins, as there. A document that is
 * not an object is parsed whole. Throws a SyntaxError for a document cut short, and where
 * JSON.parse would on the parts read.
 */
export function pickJson(data: Buffer, shape: JsonShape): unknown {
  const start = skipSpace(data, 0);
  if (data[start] !== OPEN_BRACE) return JSON.parse(data.toString('utf8'));
  const { value, end } = readObject(data, start, shape);
  if (skipSpace(data, end) !== data.length) throw new SyntaxError(`Unexpected data after the JSON object at position ${end}`);
  return value;
}

interface Read {
  value: Record<string, unknown>;
  /** Index just past the object's closing brace. */
  end: number;
}

function readObject(data: Buffer, open: number, shape: JsonShape): Read {
  const value: Record<string, unknown> = {};
  let i = skipSpace(data, open + 1);
  if (data[i] === CLOSE_BRACE) return { value, end: i + 1 };
  for (;;) {
    if (data[i] !== QUOTE) throw unexpected(data, i, 'a member name');
    const keyEnd = stringEnd(data, i);
    const name = memberNamed(data, i, keyEnd, shape);
    const member = name === undefined ? undefined : shape[name];
    i = skipSpace(data, keyEnd);
    if (data[i] !== COLON) throw unexpected(data, i, "':'");
    const at = skipSpace(data, i + 1);
    if (member !== undefined && member !== true && data[at] === OPEN_BRACE) {
      const inner = readObject(data, at, member);
      value[name!] = inner.value;
      i = inner.end;
    } else {
      i = skipValue(data, at);
      if (member !== undefined) value[name!] = valueAt(data, at, i);
    }
    i = skipSpace(data, i);
    if (data[i] === CLOSE_BRACE) return { value, end: i + 1 };
    if (data[i] !== COMMA) throw unexpected(data, i, "',' or '}'");
    i = skipSpace(data, i + 1);
  }
}

/** A shape's member names, as bytes, to match keys against without decoding them. */
const namesOfShape = new WeakMap<JsonShape, { name: string; bytes: Buffer }[]>();

/**
 * The member of `shape` that the quoted key data[open, end) names, or undefined. Keys are matched
 * as bytes: most are not in the shape, and decoding each into a string cost more than JSON.parse
 * of a small event. Only a key with an escape (or a control character) is decoded.
 */
function memberNamed(data: Buffer, open: number, end: number, shape: JsonShape): string | undefined {
  if (!isPlain(data, open, end)) {
    const name = stringAt(data, open, end);
    return Object.hasOwn(shape, name) ? name : undefined;
  }
  let names = namesOfShape.get(shape);
  if (names === undefined) namesOfShape.set(shape, (names = Object.keys(shape).map((name) => ({ name, bytes: Buffer.from(name) }))));
  const length = end - open - 2;
  for (const { name, bytes } of names) {
    if (bytes.length !== length) continue;
    let i = 0;
    while (i < length && data[open + 1 + i] === bytes[i]) i++;
    if (i === length) return name;
  }
  return undefined;
}

/**
 * The value data[start, end) as JSON.parse reads it. Plain strings and small non-negative
 * integers (token counts) are read here: a JSON.parse call for each cost more than the scan.
 */
function valueAt(data: Buffer, start: number, end: number): unknown {
  if (data[start] === QUOTE) return stringAt(data, start, end);
  // Up to 15 digits, no leading zero: exact as a double, and what JSON.parse would make of it.
  if (end - start <= 15 && (data[start] !== 0x30 || end - start === 1)) {
    let integer = 0;
    let i = start;
    while (i < end && data[i]! >= 0x30 && data[i]! <= 0x39) integer = integer * 10 + data[i++]! - 0x30;
    if (i === end) return integer;
  }
  return JSON.parse(data.toString('utf8', start, end));
}

/**
 * The string whose quoted text is data[open, end): its bytes as they are when they hold no escape
 * and no control character (which JSON.parse refuses), the usual case; else what JSON.parse says.
 */
function stringAt(data: Buffer, open: number, end: number): string {
  return isPlain(data, open, end) ? data.toString('utf8', open + 1, end - 1) : (JSON.parse(data.toString('utf8', open, end)) as string);
}

/** True when the quoted string data[open, end) holds no escape and no control character. */
function isPlain(data: Buffer, open: number, end: number): boolean {
  for (let i = open + 1; i < end - 1; i++) if (data[i] === BACKSLASH || data[i]! < 0x20) return false;
  return true;
}

/** Index just past the value that starts at `at` (its first byte, not a space). */
function skipValue(data: Buffer, at: number): number {
  const c = data[at];
  if (c === QUOTE) return stringEnd(data, at);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) return containerEnd(data, at);
  // A number or a literal: up to the next delimiter, checked when read (JSON.parse) or not at all.
  let i = at;
  while (i < data.length && !isDelimiter(data[i]!)) i++;
  if (i === at) throw unexpected(data, at, 'a value');
  return i;
}

/** Index just past the string whose opening quote is at `open`. */
function stringEnd(data: Buffer, open: number): number {
  // Short strings (most keys) end within a few bytes: looked for here, without a native call.
  const near = Math.min(open + 24, data.length);
  for (let i = open + 1; i < near; i++) {
    if (data[i] === QUOTE) return i + 1;
    if (data[i] === BACKSLASH) break;
  }
  let quote = data.indexOf(QUOTE, open + 1);
  // A quote preceded by an odd number of backslashes is escaped.
  while (quote !== -1 && isEscaped(data, quote, open)) quote = data.indexOf(QUOTE, quote + 1);
  if (quote === -1) throw new SyntaxError(`Unterminated string in JSON at position ${open}`);
  return quote + 1;
}

function isEscaped(data: Buffer, quote: number, open: number): boolean {
  let backslashes = 0;
  while (quote - backslashes - 1 > open && data[quote - backslashes - 1] === BACKSLASH) backslashes++;
  return backslashes % 2 === 1;
}

/** Index just past the object or array that opens at `open`: brackets counted outside strings. */
function containerEnd(data: Buffer, open: number): number {
  let depth = 0;
  for (let i = open; i < data.length; i++) {
    const c = data[i];
    if (c === QUOTE) i = stringEnd(data, i) - 1;
    else if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
    else if ((c === CLOSE_BRACE || c === CLOSE_BRACKET) && --depth === 0) return i + 1;
  }
  throw new SyntaxError(`Unterminated object or array in JSON at position ${open}`);
}

/** JSON's insignificant whitespace: space, tab, LF, CR. */
function skipSpace(data: Buffer, from: number): number {
  let i = from;
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x09)) i++;
  return i;
}

function isDelimiter(c: number): boolean {
  return c === COMMA || c === CLOSE_BRACE || c === CLOSE_BRACKET || c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function unexpected(data: Buffer, at: number, wanted: string): SyntaxError {
  return new SyntaxError(at >= data.length ? `Unexpected end of JSON input, expected ${wanted}` : `Unexpected byte in JSON at position ${at}, expected ${wanted}`);
}
