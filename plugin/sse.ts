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
  checkMaxEventBytes(config.maxEventBytes);
  return new Scanner(config);
}

/**
 * A class rather than closures over local state: a scanner is made for every metered response,
 * and one object with its fields costs a fraction of a dozen closures and their context to make
 * and to keep alive through the response (the garbage collector copies whatever lives that long).
 */
class Scanner implements SseScanner {
  private readonly maxEventBytes: number;
  private readonly onEvent: SseScannerConfig['onEvent'];
  private readonly onError: SseScannerConfig['onError'];
  /**
   * Finds an `event:` value among the wanted types; undefined when every type is wanted (the value
   * is then decoded).
   */
  private readonly matchType: Matcher | undefined;
  private readonly defaultType: string | null;

  private stopped = false;
  /** Bytes of a possible BOM matched so far at the stream start; -1 once the start is past. */
  private bomMatched = 0;
  /**
   * The last line ended with a CR as the last byte of a chunk: an LF first in the next chunk
   * belongs to that CRLF and ends no line.
   */
  private crEnded = false;

  // The event being assembled. `type` is null when it is not a wanted one. Its data is its
  // first data line as it stands (`firstData`, a view: no copy for the usual one-line event
  // within one chunk), or, once it has more lines or outlives its chunk, in `data`.
  private type: string | null;
  private typeBytes = 0;
  /** Decided at the event's first data line. */
  private want: boolean | undefined = undefined;
  private dataLines = 0;
  private firstData: Buffer | undefined = undefined;
  private readonly data = new HeldBytes();

  /** The line that the last chunk ended in the middle of. */
  private partial: PartialLine = NO_LINE;
  private readonly heldLine = new HeldBytes();

  constructor({ events, maxEventBytes, onEvent, onError }: SseScannerConfig) {
    this.maxEventBytes = maxEventBytes;
    this.onEvent = onEvent;
    this.onError = onError;
    this.matchType = events === undefined ? undefined : matcherFor(events);
    this.defaultType = events === undefined || events.includes(DEFAULT_TYPE) ? DEFAULT_TYPE : null;
    this.type = this.defaultType;
  }

  get bufferedBytes(): number {
    return this.typeBytes + (this.firstData?.length ?? 0) + this.data.length + this.heldLine.length;
  }

  feed(chunk: Uint8Array): void {
    if (this.stopped || chunk.length === 0) return;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.bomMatched < 0) {
      this.scan(buf);
      return;
    }
    // The BOM is stripped once, at the stream start; it may itself arrive split across chunks.
    let i = 0;
    while (this.bomMatched + i < BOM.length && i < buf.length && buf[i] === BOM[this.bomMatched + i]) i++;
    if (this.bomMatched + i === BOM.length) {
      this.bomMatched = -1;
      if (i < buf.length) this.scan(buf.subarray(i));
    } else if (i === buf.length) {
      this.bomMatched += i;
    } else {
      // Not a BOM after all: the bytes held back were the stream's first bytes.
      const held = BOM.subarray(0, this.bomMatched);
      this.bomMatched = -1;
      if (held.length > 0) this.scan(held);
      if (!this.stopped) this.scan(buf);
    }
  }

  reset(): void {
    this.stopped = false;
    this.bomMatched = 0;
    this.crEnded = false;
    this.resetEvent();
    this.resetLine();
  }

  private resetEvent(): void {
    this.type = this.defaultType;
    this.typeBytes = 0;
    this.want = undefined;
    this.dataLines = 0;
    this.firstData = undefined;
    this.data.release();
  }

  private resetLine(): void {
    this.partial = NO_LINE;
    this.heldLine.release();
  }

  /** Stops the scanner when the event in progress has outgrown maxEventBytes. */
  private enforceLimit(): void {
    if (this.bufferedBytes <= this.maxEventBytes) return;
    this.resetEvent();
    this.resetLine();
    this.stopped = true;
    this.onError({
      type: 'event-too-large',
      message: `An event exceeded maxEventBytes (${this.maxEventBytes} bytes); the rest of the stream is not scanned`,
    });
  }

  private scan(buf: Buffer): void {
    const end = buf.length;
    let pos = 0;
    if (this.crEnded) {
      this.crEnded = false;
      if (buf[0] === LF) pos = 1;
    }
    // Next LF and CR at or after pos, each searched again only once passed: linear in the chunk
    // whatever the line endings.
    let lf = buf.indexOf(LF, pos);
    let cr = buf.indexOf(CR, pos);
    while (pos < end && !this.stopped) {
      if (lf !== -1 && lf < pos) lf = buf.indexOf(LF, pos);
      if (cr !== -1 && cr < pos) cr = buf.indexOf(CR, pos);
      const eol = cr === -1 || (lf !== -1 && lf < cr) ? lf : cr;
      if (eol === -1) {
        this.holdLine(buf, pos, end);
        break;
      }
      if (this.partial === NO_LINE) {
        this.line(buf, pos, eol);
      } else {
        this.finishLine(buf, pos, eol);
      }
      pos = eol + 1;
      if (buf[eol] === CR) {
        if (pos === end) this.crEnded = true;
        else if (buf[pos] === LF) pos++;
      } else if (buf[pos] === LF) {
        // An empty line right behind: how most events end. Dispatched here, it costs no search.
        this.dispatch();
        pos++;
      }
    }
    // The data of an event still in progress may be a view into this chunk: own it.
    if (this.firstData !== undefined) {
      this.data.append(this.firstData);
      this.firstData = undefined;
    }
  }

  /** Holds (or drops) the start, or a further piece, of a line the chunk ends in the middle of. */
  private holdLine(buf: Buffer, start: number, end: number): void {
    if (this.partial === NO_LINE) this.partial = HEAD;
    if (this.partial === HEAD) {
      const head = Buffer.concat([this.heldLine.view(), buf.subarray(start, Math.min(end, start + HEAD_BYTES))]);
      const kind = lineKind(head, 0, head.length, false);
      this.partial = kind === UNDECIDED ? HEAD : kind === EVENT_LINE || (kind === DATA_LINE && this.decideWant()) ? KEEP : DROP;
    }
    if (this.partial === DROP) {
      this.heldLine.release();
      return;
    }
    this.heldLine.append(buf.subarray(start, end));
    this.enforceLimit();
  }

  /** The end of a line begun in an earlier chunk. */
  private finishLine(buf: Buffer, start: number, end: number): void {
    if (this.partial === DROP) {
      this.resetLine();
      return;
    }
    this.heldLine.append(buf.subarray(start, end));
    // Released before it is read: the view stays valid, and the next line starts a new buffer.
    const whole = this.heldLine.view();
    this.resetLine();
    this.line(whole, 0, whole.length);
  }

  private line(buf: Buffer, start: number, end: number): void {
    if (start === end) {
      this.dispatch();
      return;
    }
    const kind = lineKind(buf, start, end, true);
    if (kind === DATA_LINE) {
      if (this.want ?? this.decideWant()) {
        const value = buf.subarray(valueStart(buf, start + DATA.length, end), end);
        if (this.dataLines === 0) {
          this.firstData = value;
        } else {
          // The spec's data buffer: the lines joined by LF.
          if (this.firstData !== undefined) this.data.append(this.firstData);
          this.firstData = undefined;
          this.data.append(LF_BYTES);
          this.data.append(value);
        }
        this.dataLines++;
        this.enforceLimit();
      }
    } else if (kind === EVENT_LINE) {
      const valueAt = valueStart(buf, start + EVENT.length, end);
      // The wanted type named by the value, or null; an empty value means the default type.
      if (valueAt === end) this.type = this.defaultType;
      else if (this.matchType === undefined) this.type = buf.toString('utf8', valueAt, end);
      else this.type = this.matchType(buf, valueAt, end);
      if (this.want === false && this.type !== null) {
        this.onError({
          type: 'late-event-type',
          message: `An event was typed ${JSON.stringify(this.type)} after its data lines had been skipped; it is lost`,
        });
      }
      // The caller's own strings need no room; a decoded type (every type wanted) does.
      if (this.matchType === undefined) {
        this.typeBytes = end - valueAt;
        this.enforceLimit();
      }
    }
    // Comments (":") and the id, retry and unknown fields change nothing the caller reads.
  }

  private decideWant(): boolean {
    this.want ??= this.type !== null;
    return this.want;
  }

  private dispatch(): void {
    // An event without data lines is not dispatched (spec: "If the data buffer is an empty string").
    if (this.want === true && this.type !== null) {
      const eventType = this.type;
      const eventData = this.firstData ?? this.data.view();
      // Released before it is read: the view stays valid, and the next event starts a new buffer.
      this.resetEvent();
      this.onEvent(eventType, eventData);
    } else {
      this.resetEvent();
    }
  }
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
