/**
 * OTLP/HTTP trace payloads: decode an ExportTraceServiceRequest, encode the responses.
 *
 * Spec: https://github.com/open-telemetry/opentelemetry-proto/blob/main/docs/specification.md
 * (OTLP/HTTP). Two encodings share one schema: binary protobuf (`application/x-protobuf`) and
 * OTLP/JSON (`application/json`: the proto3 JSON mapping with lowerCamelCase keys, trace and
 * span ids as hex, 64-bit integers as decimal strings or numbers, enums as integers). The
 * response uses the request's encoding; a 4xx/5xx answer carries a google.rpc.Status.
 *
 * Only what settlement reads is decoded: each span's id, end time and scalar attributes.
 * Everything else — resources, scopes, events, links, array and map attribute values — is
 * skipped (protobuf skips unknown field numbers; the JSON walker ignores unknown keys, as the
 * spec requires of receivers).
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
  /** Scalar attributes by key; array, map and bytes values are left out. */
  attributes: Map<string, AttributeValue>;
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

export function decodeExportRequest(body: Uint8Array, encoding: OtlpEncoding): DecodeResult {
  try {
    return { ok: true, spans: encoding === 'protobuf' ? decodeProtobuf(body) : decodeJson(body) };
  } catch (error) {
    // protobufjs throws plain Errors (and RangeErrors for truncated input); JSON.parse throws
    // SyntaxError; the JSON walker throws MalformedOtlp. All mean the same: a bad body.
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
 * The subset of the OTLP protos that settlement reads, with the upstream field numbers:
 * collector/trace/v1/trace_service.proto, trace/v1/trace.proto, common/v1/common.proto in
 * https://github.com/open-telemetry/opentelemetry-proto, and google/rpc/status.proto.
 */
const SCHEMA = `
syntax = "proto3";

message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { repeated ScopeSpans scope_spans = 2; }
message ScopeSpans { repeated Span spans = 2; }
message Span {
  bytes span_id = 2;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
}
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
  }
}

message ExportTraceServiceResponse { ExportTracePartialSuccess partial_success = 1; }
message ExportTracePartialSuccess { int64 rejected_spans = 1; string error_message = 2; }

message Status { int32 code = 1; string message = 2; }
`;

const root = protobuf.parse(SCHEMA).root;
const ExportTraceServiceRequest = root.lookupType('ExportTraceServiceRequest');
const ExportTraceServiceResponse = root.lookupType('ExportTraceServiceResponse');
const Status = root.lookupType('Status');

/** A 64-bit integer as protobufjs returns it: a Long when long.js is present, else a number. */
type Int64 = number | { toNumber(): number };

/** The decoded messages' shapes (protobufjs camelCases field names; `value` names the oneof member set). */
interface PbRequest {
  resourceSpans: Array<{ scopeSpans: Array<{ spans: PbSpan[] }> }>;
}
interface PbSpan {
  spanId: Uint8Array;
  endTimeUnixNano: Int64;
  attributes: Array<{ key: string; value?: PbAnyValue }>;
}
interface PbAnyValue {
  value?: 'stringValue' | 'boolValue' | 'intValue' | 'doubleValue';
  stringValue: string;
  boolValue: boolean;
  intValue: Int64;
  doubleValue: number;
}

function decodeProtobuf(body: Uint8Array): OtlpSpan[] {
  const request = ExportTraceServiceRequest.decode(body) as unknown as PbRequest;
  const spans: OtlpSpan[] = [];
  for (const resourceSpans of request.resourceSpans) {
    for (const scopeSpans of resourceSpans.scopeSpans) {
      for (const span of scopeSpans.spans) {
        const attributes = new Map<string, AttributeValue>();
        for (const { key, value } of span.attributes) {
          const scalar = value && pbScalar(value);
          if (scalar !== undefined) attributes.set(key, scalar);
        }
        spans.push({
          spanId: Buffer.from(span.spanId.buffer, span.spanId.byteOffset, span.spanId.length).toString('hex'),
          endTimeMs: toNumber(span.endTimeUnixNano) / 1e6,
          attributes,
        });
      }
    }
  }
  return spans;
}

function pbScalar(value: PbAnyValue): AttributeValue | undefined {
  switch (value.value) {
    case 'stringValue':
      return value.stringValue;
    case 'boolValue':
      return value.boolValue;
    case 'intValue':
      // Beyond 2^53 the number is no longer a safe integer, which every reader refuses.
      return toNumber(value.intValue);
    case 'doubleValue':
      return value.doubleValue;
    default:
      return undefined;
  }
}

function toNumber(value: Int64): number {
  return typeof value === 'number' ? value : value.toNumber();
}

// --- JSON --------------------------------------------------------------------------------------

class MalformedOtlp extends Error {}

function decodeJson(body: Uint8Array): OtlpSpan[] {
  const request: unknown = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.length).toString('utf8'));
  const spans: OtlpSpan[] = [];
  for (const resourceSpans of list(object(request, 'request'), 'resourceSpans')) {
    for (const scopeSpans of list(object(resourceSpans, 'resourceSpans[]'), 'scopeSpans')) {
      for (const span of list(object(scopeSpans, 'scopeSpans[]'), 'spans')) {
        spans.push(jsonSpan(object(span, 'spans[]')));
      }
    }
  }
  return spans;
}

function jsonSpan(span: Record<string, unknown>): OtlpSpan {
  const spanId = span.spanId ?? '';
  if (typeof spanId !== 'string') throw new MalformedOtlp('spanId must be a hex string');
  const attributes = new Map<string, AttributeValue>();
  for (const entry of list(span, 'attributes')) {
    const { key, value } = object(entry, 'attributes[]');
    if (typeof key !== 'string') throw new MalformedOtlp('attribute key must be a string');
    const scalar = value === undefined ? undefined : jsonScalar(object(value, `attribute ${key}`), key);
    if (scalar !== undefined) attributes.set(key, scalar);
  }
  return { spanId, endTimeMs: int64(span.endTimeUnixNano ?? 0, 'endTimeUnixNano') / 1e6, attributes };
}

/** An AnyValue; array, kvlist and bytes values (and an empty one) yield undefined. */
function jsonScalar(value: Record<string, unknown>, key: string): AttributeValue | undefined {
  if ('stringValue' in value) {
    if (typeof value.stringValue !== 'string') throw new MalformedOtlp(`attribute ${key}: stringValue must be a string`);
    return value.stringValue;
  }
  if ('boolValue' in value) {
    if (typeof value.boolValue !== 'boolean') throw new MalformedOtlp(`attribute ${key}: boolValue must be a boolean`);
    return value.boolValue;
  }
  if ('intValue' in value) return int64(value.intValue, `attribute ${key}: intValue`);
  if ('doubleValue' in value) {
    // The JSON mapping also allows "NaN", "Infinity" and numeric strings.
    const double = typeof value.doubleValue === 'string' ? Number(value.doubleValue) : value.doubleValue;
    if (typeof double !== 'number' || (Number.isNaN(double) && value.doubleValue !== 'NaN')) {
      throw new MalformedOtlp(`attribute ${key}: doubleValue must be a number`);
    }
    return double;
  }
  return undefined;
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
