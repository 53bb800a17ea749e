/**
 * A byte-level scanner for server-sent events, for the metering hot path.
 *
 * It follows the WHATWG parsing rules
 * (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
 * in the style of eventsource-parser, with one difference that matters here: it is told which
 * event types the caller reads, and the data of any other event is never copied, decoded or
 * held. Usage lives in a handful of events among thousands of text deltas, and decoding each of
 * them would cost more than proxying the bytes. A wanted event is handed over as raw bytes; only
 * then may the caller look at them (a byte check), decode them or JSON-parse them.
 *
 * `id:` and `retry:` are parsed as fields and ignored: they serve a reconnecting client, and the
 * scanner only reads a copy of a response that the client itself consumes.
 */

export interface SseScannerConfig {
  /**
   * The event types to hand over; the data of any other event is skipped unread and does not
   * count against maxEventBytes. An event without an `event:` line (or with an empty one) has
   * the type "message", as in the EventSource API. Omitted: every event.
   */
  events?: readonly string[];
  /** Largest wanted event (its type, data lines and the line being read) held, in bytes. */
  maxEventBytes: number;
  /**
   * A wanted event is complete. `data` is its raw UTF-8 data lines joined by LF; it is only
   * valid during the call (it may be a view into the chunk being fed): copy what must outlive it.
   */
  onEvent(type: string, data: Buffer): void;
  /** Input the scanner gave up on; reported, never thrown. */
  onError(error: SseScanError): void;
}

export interface SseScanError {
  /**
   * `event-too-large`: a wanted event outgrew maxEventBytes; the scanner stops until reset().
   * `late-event-type`: an `event:` line came after the data lines of an event that had been
   * skipped under its earlier type, and named a wanted type; that event is lost.
   */
  type: 'event-too-large' | 'late-event-type';
  message: string;
}

export interface SseScanner {
  /** Scans the next chunk of the stream; keeps no reference to it after returning. */
  feed(chunk: Uint8Array): void;
  /**
   * Forgets the event and line in progress, as the end of the stream does (an event without
   * its final blank line is never dispatched), and starts a new stream (BOM included).
   */
  reset(): void;
  /** Bytes held between chunks for the event and the line in progress. */
  readonly bufferedBytes: number;
}

const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const COLON = 0x3a;
const BOM = Buffer.from([0xef, 0xbb, 0xbf]);
const DATA = Buffer.from('data');
const EVENT = Buffer.from('event');
const LF_BYTES = Buffer.from([LF]);
const EMPTY = Buffer.alloc(0);
const DEFAULT_TYPE = 'message';

// What a line is, from its field name. UNDECIDED: the line was cut by the chunk's end before
// the field name could be told apart from "data:"/"event:".
const DATA_LINE = 0;
const EVENT_LINE = 1;
const OTHER_LINE = 2;
const UNDECIDED = 3;
type LineKind = typeof DATA_LINE | typeof EVENT_LINE | typeof OTHER_LINE | typeof UNDECIDED;

// What to do with the rest of a line that a chunk ended in the middle of.
const NO_LINE = 0; // the last chunk ended on a line end
const HEAD = 1; // too short yet to tell its field: hold the (few) bytes
const KEEP = 2; // an `event:` line or data of a wanted event: hold it to the line end
const DROP = 3; // data of a skipped event, a comment, or a field nobody reads
type PartialLine = typeof NO_LINE | typeof HEAD | typeof KEEP | typeof DROP;

// "event:" is the longest field name that matters, plus its colon.
const HEAD_BYTES = EVENT.length + 1;

/** Fails fast, naming the option, on a limit that would bound nothing (NaN compares false). */
export function checkMaxEventBytes(maxEventBytes: number): void {
  if (!Number.isSafeInteger(maxEventBytes) || maxEventBytes <= 0) {
    throw new RangeError(`maxEventBytes must be a positive integer, got ${String(maxEventBytes)}`);
  }
}

export function createSseScanner(config: SseScannerConfig): SseScanner {
  const { events, maxEventBytes, onEvent, onError } = config;
  checkMaxEventBytes(maxEventBytes);
  // The wanted type named by an `event:` value, or null; an empty value means the default type.
  const typeOf = events === undefined ? decodeType : matcherFor(events);
  const defaultType = events === undefined || events.includes(DEFAULT_TYPE) ? DEFAULT_TYPE : null;

  let stopped = false;
  // Bytes of a possible BOM matched so far at the stream start; -1 once the start is past.
  let bomMatched = 0;
  // The last line ended with a CR as the last byte of a chunk: an LF first in the next chunk
  // belongs to that CRLF and ends no line.
  let crEnded = false;

  // The event being assembled. `type` is null when it is not a wanted one. Its data is its
  // first data line as it stands (`firstData`, a view: no copy for the usual one-line event
  // within one chunk), or, once it has more lines or outlives its chunk, in `data`.
  let type = defaultType;
  let typeBytes = 0;
  let want: boolean | undefined; // decided at its first data line
  let dataLines = 0;
  let firstData: Buffer | undefined;
  const data = new HeldBytes();

  // The line that the last chunk ended in the middle of.
  let partial: PartialLine = NO_LINE;
  const heldLine = new HeldBytes();

  function resetEvent(): void {
    type = defaultType;
    typeBytes = 0;
    want = undefined;
    dataLines = 0;
    firstData = undefined;
    data.release();
  }

  function resetLine(): void {
    partial = NO_LINE;
    heldLine.release();
  }

  function reset(): void {
    stopped = false;
    bomMatched = 0;
    crEnded = false;
    resetEvent();
    resetLine();
  }

  function bufferedBytes(): number {
    return typeBytes + (firstData?.length ?? 0) + data.length + heldLine.length;
  }

  /** Stops the scanner when the event in progress has outgrown maxEventBytes. */
  function enforceLimit(): void {
    if (bufferedBytes() <= maxEventBytes) return;
    resetEvent();
    resetLine();
    stopped = true;
    onError({
      type: 'event-too-large',
      message: `An event exceeded maxEventBytes (${maxEventBytes} bytes); the rest of the stream is not scanned`,
    });
  }

  function feed(chunk: Uint8Array): void {
    if (stopped || chunk.length === 0) return;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (bomMatched < 0) {
      scan(buf);
      return;
    }
    // The BOM is stripped once, at the stream start; it may itself arrive split across chunks.
    let i = 0;
    while (bomMatched + i < BOM.length && i < buf.length && buf[i] === BOM[bomMatched + i]) i++;
    if (bomMatched + i === BOM.length) {
      bomMatched = -1;
      if (i < buf.length) scan(buf.subarray(i));
    } else if (i === buf.length) {
      bomMatched += i;
    } else {
      // Not a BOM after all: the bytes held back were the stream's first bytes.
      const held = BOM.subarray(0, bomMatched);
      bomMatched = -1;
      if (held.length > 0) scan(held);
      if (!stopped) scan(buf);
    }
  }

  function scan(buf: Buffer): void {
    const end = buf.length;
    let pos = 0;
    if (crEnded) {
      crEnded = false;
      if (buf[0] === LF) pos = 1;
    }
    // Next LF and CR at or after pos, each searched again only once passed: linear in the chunk
    // whatever the line endings.
    let lf = buf.indexOf(LF, pos);
    let cr = buf.indexOf(CR, pos);
    while (pos < end && !stopped) {
      if (lf !== -1 && lf < pos) lf = buf.indexOf(LF, pos);
      if (cr !== -1 && cr < pos) cr = buf.indexOf(CR, pos);
      const eol = cr === -1 || (lf !== -1 && lf < cr) ? lf : cr;
      if (eol === -1) {
        holdLine(buf, pos, end);
        break;
      }
      if (partial === NO_LINE) {
        line(buf, pos, eol);
      } else {
        finishLine(buf, pos, eol);
      }
      pos = eol + 1;
      if (buf[eol] === CR) {
        if (pos === end) crEnded = true;
        else if (buf[pos] === LF) pos++;
      } else if (buf[pos] === LF) {
        // An empty line right behind: how most events end. Dispatched here, it costs no search.
        dispatch();
        pos++;
      }
    }
    // The data of an event still in progress may be a view into this chunk: own it.
    if (firstData !== undefined) {
      data.append(firstData);
      firstData = undefined;
    }
  }

  /** Holds (or drops) the start, or a further piece, of a line the chunk ends in the middle of. */
  function holdLine(buf: Buffer, start: number, end: number): void {
    if (partial === NO_LINE) partial = HEAD;
    if (partial === HEAD) {
      const head = Buffer.concat([heldLine.view(), buf.subarray(start, Math.min(end, start + HEAD_BYTES))]);
      const kind = lineKind(head, 0, head.length, false);
      partial = kind === UNDECIDED ? HEAD : kind === EVENT_LINE || (kind === DATA_LINE && decideWant()) ? KEEP : DROP;
    }
    if (partial === DROP) {
      heldLine.release();
      return;
    }
    heldLine.append(buf.subarray(start, end));
    enforceLimit();
  }

  /** The end of a line begun in an earlier chunk. */
  function finishLine(buf: Buffer, start: number, end: number): void {
    if (partial === DROP) {
      resetLine();
      return;
    }
    heldLine.append(buf.subarray(start, end));
    // Released before it is read: the view stays valid, and the next line starts a new buffer.
    const whole = heldLine.view();
    resetLine();
    line(whole, 0, whole.length);
  }

  function line(buf: Buffer, start: number, end: number): void {
    if (start === end) {
      dispatch();
      return;
    }
    const kind = lineKind(buf, start, end, true);
    if (kind === DATA_LINE) {
      if (want ?? decideWant()) {
        const value = buf.subarray(valueStart(buf, start + DATA.length, end), end);
        if (dataLines === 0) {
          firstData = value;
        } else {
          // The spec's data buffer: the lines joined by LF.
          if (firstData !== undefined) data.append(firstData);
          firstData = undefined;
          data.append(LF_BYTES);
          data.append(value);
        }
        dataLines++;
        enforceLimit();
      }
    } else if (kind === EVENT_LINE) {
      const valueAt = valueStart(buf, start + EVENT.length, end);
      type = valueAt === end ? defaultType : typeOf(buf, valueAt, end);
      if (want === false && type !== null) {
        onError({
          type: 'late-event-type',
          message: `An event was typed ${JSON.stringify(type)} after its data lines had been skipped; it is lost`,
        });
      }
      // The caller's own strings need no room; a decoded type (every type wanted) does.
      if (events === undefined) {
        typeBytes = end - valueAt;
        enforceLimit();
      }
    }
    // Comments (":") and the id, retry and unknown fields change nothing the caller reads.
  }

  function decideWant(): boolean {
    want ??= type !== null;
    return want;
  }

  function dispatch(): void {
    // An event without data lines is not dispatched (spec: "If the data buffer is an empty string").
    if (want === true && type !== null) {
      const eventType = type;
      const eventData = firstData ?? data.view();
      // Released before it is read: the view stays valid, and the next event starts a new buffer.
      resetEvent();
      onEvent(eventType, eventData);
    } else {
      resetEvent();
    }
  }

  return {
    feed,
    reset,
    get bufferedBytes() {
      return bufferedBytes();
    },
  };
}

function decodeType(buf: Buffer, start: number, end: number): string {
  return buf.toString('utf8', start, end);
}

type Matcher = (buf: Buffer, start: number, end: number) => string | null;

/**
 * One matcher per list of wanted types: the lists are the extractors' constants, and a scanner
 * is made per response — building the matcher's buffers each time cost more than scanning a
 * 20 KB stream.
 */
const matchers = new WeakMap<readonly string[], Matcher>();

function matcherFor(types: readonly string[]): Matcher {
  let match = matchers.get(types);
  if (match === undefined) matchers.set(types, (match = matcher(types)));
  return match;
}

/**
 * Compares an event's name with the wanted types of the same length (most names have none)
 * rather than decode every event's name.
 */
function matcher(types: readonly string[]): Matcher {
  const byLength: { type: string; bytes: Buffer }[][] = [];
  for (const type of types) {
    const bytes = Buffer.from(type);
    (byLength[bytes.length] ??= []).push({ type, bytes });
  }
  return (buf, start, end) => {
    const sameLength = byLength[end - start];
    if (sameLength === undefined) return null;
    for (const { type, bytes } of sameLength) {
      if (buf.compare(bytes, 0, bytes.length, start, end) === 0) return type;
    }
    return null;
  };
}

/** Which field the line buf[start, end) sets; `complete` is false when the line may go on. */
function lineKind(buf: Buffer, start: number, end: number, complete: boolean): LineKind {
  if (end - start > HEAD_BYTES) {
    // The lines that fill nearly every stream, spelled out byte by byte: a loop over the field
    // name costs a tenth of the whole scan.
    const c = buf[start];
    if (c === 0x64 && buf[start + 1] === 0x61 && buf[start + 2] === 0x74 && buf[start + 3] === 0x61) {
      return buf[start + 4] === COLON ? DATA_LINE : OTHER_LINE; // "data:"
    }
    if (c === 0x65 && buf[start + 1] === 0x76 && buf[start + 2] === 0x65 && buf[start + 3] === 0x6e && buf[start + 4] === 0x74) {
      return buf[start + 5] === COLON ? EVENT_LINE : OTHER_LINE; // "event:"
    }
    return OTHER_LINE;
  }
  const data = isField(buf, start, end, DATA, complete);
  if (data !== false) return data === true ? DATA_LINE : UNDECIDED;
  const event = isField(buf, start, end, EVENT, complete);
  if (event !== false) return event === true ? EVENT_LINE : UNDECIDED;
  return OTHER_LINE;
}

/**
 * Whether the line sets field `field`: the name then a colon, or the name alone (a field with an
 * empty value). undefined when the line was cut too early to tell.
 */
function isField(buf: Buffer, start: number, end: number, field: Buffer, complete: boolean): boolean | undefined {
  for (let i = 0; i < field.length; i++) {
    if (start + i === end) return complete ? false : undefined;
    if (buf[start + i] !== field[i]) return false;
  }
  const after = start + field.length;
  if (after === end) return complete ? true : undefined;
  return buf[after] === COLON;
}

/** Where a field's value starts, `afterName` being the index just past the field name. */
function valueStart(buf: Buffer, afterName: number, end: number): number {
  if (afterName === end) return end;
  // Past the colon, one optional space is not part of the value.
  return afterName + 1 < end && buf[afterName + 1] === SPACE ? afterName + 2 : afterName + 1;
}

/**
 * Bytes held across chunks, appended into one buffer that doubles when full: each byte is
 * copied a bounded number of times, and memory stays within about twice what is held however
 * small the pieces come (a list of pieces would spend some 100 bytes of object on each).
 */
class HeldBytes {
  private buffer = EMPTY;
  length = 0;

  append(piece: Uint8Array): void {
    if (this.length + piece.length > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(2 * this.buffer.length, this.length + piece.length, 64));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    this.buffer.set(piece, this.length);
    this.length += piece.length;
  }

  view(): Buffer {
    return this.buffer.subarray(0, this.length);
  }

  /** Forgets the bytes without reusing their buffer, so that a view handed out stays valid. */
  release(): void {
    this.buffer = EMPTY;
    this.length = 0;
  }
}
