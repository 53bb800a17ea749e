/**
 * OTLP/HTTP trace payloads: decode an ExportTraceServiceRequest, encode the responses.
 *
 * Spec: https://github.com/open-telemetry/opentelemetry-proto/blob/main/docs/specification.md
 * (OTLP/HTTP). Two encodings share one schema: binary protobuf (`application/x-protobuf`) and
 * OTLP/JSON (`application/json`: the proto3 JSON mapping with lowerCamelCase keys, trace and
 * span ids as hex, 64-bit integers as decimal strings or numbers, enums as integers). The
 * response uses the request's encoding; a 4xx/5xx answer carries a google.rpc.Status.
 *
 * Only what settlement reads is decoded: each span's id, end time and the scalar attributes it
 * asks for by name (AttributeKeys). Everything else — resources, scopes, events, links, other
 * attributes, array and map values — is skipped (unknown protobuf fields are skipped by their
 * wire type; the JSON walker ignores unknown keys, as the spec requires of receivers).
 *
 * The decoder is a boundary: whatever the bytes, `decodeExportRequest` returns a result and never
 * throws, so a malformed body is always a 400.
 */
import protobuf from 'protobufjs';

export type OtlpEncoding = 'protobuf' | 'json';

export const CONTENT_TYPES: Record<OtlpEncoding, string> = {
  protobuf: 'application/x-protobuf',
  json: 'application/json',
};

/** A scalar attribute value. Integers and doubles are both numbers; the reader checks integrality. */
export type AttributeValue = string | number | boolean;

/** One span, as settlement needs it. */
export interface OtlpSpan {
  /** Hex span id, for messages (empty when the sender left it out). */
  spanId: string;
  /** End time in milliseconds since the epoch (OTLP carries nanoseconds); 0 when unset. */
  endTimeMs: number;
  /** The scalar attributes asked for, by key; array, map and bytes values are left out. */
  attributes: Map<string, AttributeValue>;
}

/**
 * The attribute names a decoder keeps. In protobuf, a key is matched on its UTF-8 bytes: an
 * attribute nobody reads costs no string, and a billing span carries a dozen of them.
 */
export class AttributeKeys {
  readonly names: ReadonlySet<string>;
  private readonly byLength = new Map<number, Array<{ bytes: Buffer; name: string }>>();

  constructor(names: Iterable<string>) {
    this.names = new Set(names);
    for (const name of this.names) {
      const bytes = Buffer.from(name, 'utf8');
      const sameLength = this.byLength.get(bytes.length) ?? [];
      sameLength.push({ bytes, name });
      this.byLength.set(bytes.length, sameLength);
    }
  }

  /** The name whose UTF-8 encoding is `buf[start, end)`, if it is one of these. */
  match(buf: Uint8Array, start: number, end: number): string | undefined {
    candidates: for (const { bytes, name } of this.byLength.get(end - start) ?? []) {
      for (let i = 0; i < bytes.length; i++) if (buf[start + i] !== bytes[i]) continue candidates;
      return name;
    }
    return undefined;
  }
}

export type DecodeResult = { ok: true; spans: OtlpSpan[] } | { ok: false; error: string };

export interface PartialSuccess {
  rejectedSpans: number;
  errorMessage: string;
}

/** The encoding a Content-Type header names (parameters such as charset ignored), if supported. */
export function encodingOf(contentType: string | undefined): OtlpEncoding | undefined {
  const mediaType = contentType?.split(';', 1)[0]!.trim().toLowerCase();
  if (mediaType === CONTENT_TYPES.protobuf) return 'protobuf';
  if (mediaType === CONTENT_TYPES.json) return 'json';
  return undefined;
}

export function decodeExportRequest(body: Uint8Array, encoding: OtlpEncoding, keys: AttributeKeys): DecodeResult {
  try {
    return { ok: true, spans: encoding === 'protobuf' ? decodeProtobuf(body, keys) : decodeJson(body, keys) };
  } catch (error) {
    // protobufjs's Reader throws RangeErrors for truncated input and Errors for bad wire types;
    // JSON.parse throws SyntaxError; the walkers throw MalformedOtlp. All mean a bad body.
    return { ok: false, error: `malformed OTLP ${encoding} body: ${(error as Error).message}` };
  }
}

/** An ExportTraceServiceResponse: empty on full success, else with partial_success set. */
export function encodeExportResponse(encoding: OtlpEncoding, partialSuccess?: PartialSuccess): Uint8Array {
  if (encoding === 'json') {
    // int64 as a decimal string, per the proto3 JSON mapping.
    const body = partialSuccess
      ? { partialSuccess: { rejectedSpans: String(partialSuccess.rejectedSpans), errorMessage: partialSuccess.errorMessage } }
      : {};
    return Buffer.from(JSON.stringify(body));
  }
  return ExportTraceServiceResponse.encode({ partialSuccess }).finish();
}

/** A google.rpc.Status with only a message: the spec does not use Status.code. */
export function encodeStatus(encoding: OtlpEncoding, message: string): Uint8Array {
  if (encoding === 'json') return Buffer.from(JSON.stringify({ message }));
  return Status.encode({ message }).finish();
}

// --- Protobuf --------------------------------------------------------------------------------

/**
 * The messages of the response and of a 4xx/5xx answer, from
 * collector/trace/v1/trace_service.proto (https://github.com/open-telemetry/opentelemetry-proto)
 * and google/rpc/status.proto.
 */
const RESPONSES = `
syntax = "proto3";
message ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
message ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; }
message Status { int32 code = 1; string message = 2; }
`;
const responses = protobuf.parse(RESPONSES).root;
const ExportTraceServiceResponse = responses.lookupType('ExportTraceServiceResponse');
const Status = responses.lookupType('Status');

/**
 * The request is read with protobufjs's Reader, field by field, as the code protobufjs generates
 * from a schema does, but straight into OtlpSpans: no message object per attribute and value,
 * and no string for an attribute key settlement does not read. The fields read, as tags
 * (field number << 3 | wire type), from trace_service.proto, trace/v1/trace.proto and
 * common/v1/common.proto:
 *
 *   ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
 *   ResourceSpans             { repeated ScopeSpans scope_spans = 2; }
 *   ScopeSpans                { repeated Span spans = 2; }
 *   Span                      { bytes span_id = 2; fixed64 end_time_unix_nano = 8; repeated KeyValue attributes = 9; }
 *   KeyValue                  { string key = 1; AnyValue value = 2; }
 *   AnyValue                  { oneof value { string string_value = 1; bool bool_value = 2;
 *                                             int64 int_value = 3; double double_value = 4; … } }
 *
 * Any other field, of any message, is skipped by its wire type.
 */
const VARINT = 0;
const FIXED64 = 1;
const LENGTH_DELIMITED = 2;
const tag = (field: number, wireType: number) => (field << 3) | wireType;
const REQUEST_RESOURCE_SPANS = tag(1, LENGTH_DELIMITED);
const RESOURCE_SPANS_SCOPE_SPANS = tag(2, LENGTH_DELIMITED);
const SCOPE_SPANS_SPANS = tag(2, LENGTH_DELIMITED);
const SPAN_SPAN_ID = tag(2, LENGTH_DELIMITED);
const SPAN_END_TIME_UNIX_NANO = tag(8, FIXED64);
const SPAN_ATTRIBUTES = tag(9, LENGTH_DELIMITED);
const KEY_VALUE_KEY = tag(1, LENGTH_DELIMITED);
const KEY_VALUE_VALUE = tag(2, LENGTH_DELIMITED);
const ANY_VALUE_STRING = tag(1, LENGTH_DELIMITED);
const ANY_VALUE_BOOL = tag(2, VARINT);
const ANY_VALUE_INT = tag(3, VARINT);
const ANY_VALUE_DOUBLE = tag(4, FIXED64);

function decodeProtobuf(body: Uint8Array, keys: AttributeKeys): OtlpSpan[] {
  const reader = protobuf.Reader.create(body);
  const spans: OtlpSpan[] = [];
  eachMessage(reader, reader.len, REQUEST_RESOURCE_SPANS, (resourceSpansEnd) =>
    eachMessage(reader, resourceSpansEnd, RESOURCE_SPANS_SCOPE_SPANS, (scopeSpansEnd) =>
      eachMessage(reader, scopeSpansEnd, SCOPE_SPANS_SPANS, (spanEnd) => spans.push(readSpan(reader, spanEnd, keys))),
    ),
  );
  return spans;
}

/** Reads each embedded message of the field `wanted` until `end`, skipping other fields. */
function eachMessage(reader: protobuf.Reader, end: number, wanted: number, read: (end: number) => void): void {
  while (reader.pos < end) {
    const fieldTag = reader.uint32();
    if (fieldTag === wanted) {
      const messageEnd = openField(reader);
      read(messageEnd);
      closeField(reader, messageEnd);
    } else {
      reader.skipType(fieldTag & 7);
    }
  }
}

/** Reads the length of a length-delimited field (an embedded message, a string); where it ends. */
function openField(reader: protobuf.Reader): number {
  const length = reader.uint32();
  const end = reader.pos + length;
  if (end > reader.len) throw new MalformedOtlp(`a length of ${length} at byte ${reader.pos} runs past the end of the body`);
  return end;
}

/** An embedded message whose contents ran past its length is malformed. */
function closeField(reader: protobuf.Reader, end: number): void {
  if (reader.pos !== end) throw new MalformedOtlp(`a field runs past the end of its message at byte ${end}`);
}

function readSpan(reader: protobuf.Reader, end: number, keys: AttributeKeys): OtlpSpan {
  const span: OtlpSpan = { spanId: '', endTimeMs: 0, attributes: new Map() };
  while (reader.pos < end) {
    const fieldTag = reader.uint32();
    if (fieldTag === SPAN_SPAN_ID) {
      const id = reader.bytes();
      span.spanId = Buffer.from(id.buffer, id.byteOffset, id.length).toString('hex');
    } else if (fieldTag === SPAN_END_TIME_UNIX_NANO) {
      span.endTimeMs = toNumber(reader.fixed64()) / 1e6;
    } else if (fieldTag === SPAN_ATTRIBUTES) {
      const attributeEnd = openField(reader);
      readAttribute(reader, attributeEnd, keys, span.attributes);
      closeField(reader, attributeEnd);
    } else {
      reader.skipType(fieldTag & 7);
    }
  }
  return span;
}

function readAttribute(reader: protobuf.Reader, end: number, keys: AttributeKeys, into: Map<string, AttributeValue>): void {
  let key: string | undefined;
  let value: AttributeValue | undefined;
  while (reader.pos < end) {
    const fieldTag = reader.uint32();
    if (fieldTag === KEY_VALUE_KEY) {
      const keyEnd = openField(reader);
      key = keys.match(reader.buf, reader.pos, keyEnd);
      reader.pos = keyEnd;
      if (key === undefined) {
        reader.pos = end; // not an attribute anyone asked for: skip the rest, value included, undecoded
        return;
      }
    } else if (fieldTag === KEY_VALUE_VALUE) {
      const valueEnd = openField(reader);
      value = readScalar(reader, valueEnd);
      closeField(reader, valueEnd);
    } else {
      reader.skipType(fieldTag & 7);
    }
  }
  if (key !== undefined && value !== undefined) into.set(key, value);
}

/** An AnyValue's scalar; undefined for array, kvlist and bytes values (skipped) and an empty one. */
function readScalar(reader: protobuf.Reader, end: number): AttributeValue | undefined {
  let value: AttributeValue | undefined;
  while (reader.pos < end) {
    const fieldTag = reader.uint32();
    if (fieldTag === ANY_VALUE_STRING) value = reader.string();
    else if (fieldTag === ANY_VALUE_BOOL) value = reader.bool();
    else if (fieldTag === ANY_VALUE_INT) value = toNumber(reader.int64());
    else if (fieldTag === ANY_VALUE_DOUBLE) value = reader.double();
    else reader.skipType(fieldTag & 7);
  }
  return value;
}

/**
 * A 64-bit integer as a number (beyond 2^53 no longer exact, and so not a safe integer, which
 * every reader refuses). protobufjs returns a long.js Long, or a plain number without long.js.
 */
function toNumber(value: protobuf.Long | number): number {
  if (typeof value === 'number') return value;
  const high = value.unsigned ? value.high >>> 0 : value.high | 0;
  return high * 2 ** 32 + (value.low >>> 0);
}

// --- JSON --------------------------------------------------------------------------------------

class MalformedOtlp extends Error {}

function decodeJson(body: Uint8Array, keys: AttributeKeys): OtlpSpan[] {
  const request: unknown = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.length).toString('utf8'));
  const spans: OtlpSpan[] = [];
  for (const resourceSpans of list(object(request, 'request'), 'resourceSpans')) {
    for (const scopeSpans of list(object(resourceSpans, 'resourceSpans[]'), 'scopeSpans')) {
      for (const span of list(object(scopeSpans, 'scopeSpans[]'), 'spans')) {
        spans.push(jsonSpan(object(span, 'spans[]'), keys));
      }
    }
  }
  return spans;
}

function jsonSpan(span: Record<string, unknown>, keys: AttributeKeys): OtlpSpan {
  const spanId = span.spanId ?? '';
  if (typeof spanId !== 'string') throw new MalformedOtlp('spanId must be a hex string');
  const attributes = new Map<string, AttributeValue>();
  for (const entry of list(span, 'attributes')) {
    const { key, value } = object(entry, 'attributes[]');
    if (typeof key !== 'string') throw new MalformedOtlp('attribute key must be a string');
    if (!keys.names.has(key)) continue;
    // The JSON mapping reads null as the field's default: an empty value, as if absent.
    const scalar = value === undefined || value === null ? undefined : jsonScalar(object(value, `attribute ${key}`), key);
    if (scalar !== undefined) attributes.set(key, scalar);
  }
  return { spanId, endTimeMs: int64(span.endTimeUnixNano ?? 0, 'endTimeUnixNano') / 1e6, attributes };
}

/**
 * An AnyValue; array, kvlist and bytes values (and an empty one) yield undefined. A member that
 * is null is not set (the JSON mapping's default).
 */
function jsonScalar(value: Record<string, unknown>, key: string): AttributeValue | undefined {
  const { stringValue, boolValue, intValue, doubleValue } = value;
  if (stringValue != null) {
    if (typeof stringValue !== 'string') throw new MalformedOtlp(`attribute ${key}: stringValue must be a string`);
    return stringValue;
  }
  if (boolValue != null) {
    if (typeof boolValue !== 'boolean') throw new MalformedOtlp(`attribute ${key}: boolValue must be a boolean`);
    return boolValue;
  }
  if (intValue != null) return int64(intValue, `attribute ${key}: intValue`);
  if (doubleValue != null) return double(doubleValue, `attribute ${key}: doubleValue`);
  return undefined;
}

/**
 * The JSON mapping's double: a number, or a string holding a decimal number (exponent allowed),
 * "NaN", "Infinity" or "-Infinity". Number() alone would also take "", " " and "0x3e8".
 */
const DOUBLE_STRING = /^(?:-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|NaN|-?Infinity)$/;

function double(value: unknown, what: string): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'string' && DOUBLE_STRING.test(value)) return Number(value);
  throw new MalformedOtlp(`${what} must be a number`);
}

/** A 64-bit integer: a decimal string or a JSON number. */
function int64(value: unknown, what: string): number {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  throw new MalformedOtlp(`${what} must be an integer or a decimal string`);
}

function object(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new MalformedOtlp(`${what} must be an object`);
  }
  return value as Record<string, unknown>;
}

/** A repeated field: absent (or null) is empty. */
function list(parent: Record<string, unknown>, key: string): unknown[] {
  const value = parent[key];
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new MalformedOtlp(`${key} must be an array`);
  return value;
}
