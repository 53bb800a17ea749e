import { createServer, type Server } from 'node:http';
import { expect } from 'chai';
import fc from 'fast-check';
import protobuf from 'protobufjs';
import { AttributeKeys, decodeExportRequest, encodeExportResponse, encodingOf, type DecodeResult, type OtlpEncoding } from '../../collector/otlp.js';
import { close, exportSpans, listen } from './helpers.js';
import {
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  ATTR_TOLLGATE_RESERVATION_AMOUNT,
  ATTR_TOLLGATE_RESERVATION_ID,
} from '../../plugin/semconv.js';

/** The attributes these tests ask the decoder for; any other is skipped. */
const KEYS = new AttributeKeys([
  ATTR_TOLLGATE_RESERVATION_ID,
  ATTR_TOLLGATE_RESERVATION_AMOUNT,
  ATTR_GEN_AI_USAGE_INPUT_TOKENS,
  'ratio',
  'streamed',
  'tags',
  'other',
  'ключ',
  'big',
  'n',
  'd',
  'e',
  'bytes',
  'empty',
  'nullValue',
  'nullMember',
  'a',
]);

/** Bodies exactly as the real exporters post them, captured by a bare loopback server. */
async function captureBody(encoding: OtlpEncoding): Promise<Buffer> {
  let body = Buffer.alloc(0);
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      body = Buffer.concat(parts);
      res.writeHead(200, { 'content-type': req.headers['content-type'] }).end();
    });
  });
  const url = await listen(server);
  try {
    await exportSpans(
      `${url}/v1/traces`,
      encoding,
      [
        {
          [ATTR_TOLLGATE_RESERVATION_ID]: 'r-1',
          [ATTR_TOLLGATE_RESERVATION_AMOUNT]: 4500,
          [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: 1000,
          ratio: 0.25,
          streamed: true,
          tags: ['a', 'b'],
          ключ: 7,
          'not.asked.for': 'skipped',
          // Same length as a key asked for, one byte apart.
          'tollgate.reservation.ie': 'skipped',
        },
        { other: 'span' },
      ],
      { processor: 'batch', endTime: new Date(1_700_000_000_123) },
    );
  } finally {
    await close(server);
  }
  return body;
}

/** Whatever the input, the decoder answers: never a throw. */
function assertAnswers(result: DecodeResult): void {
  if (result.ok) expect(result.spans).to.be.an('array');
  else expect(result.error).to.be.a('string');
}

describe('collector/otlp', () => {
  const bodies = {} as Record<OtlpEncoding, Buffer>;
  before(async () => {
    bodies.protobuf = await captureBody('protobuf');
    bodies.json = await captureBody('json');
  });

  for (const encoding of ['protobuf', 'json'] as const) {
    it(`decodes what the real ${encoding} exporter sends`, () => {
      const result = decodeExportRequest(bodies[encoding], encoding, KEYS);
      expect(result.ok, JSON.stringify(result)).to.equal(true);
      const spans = (result as Extract<DecodeResult, { ok: true }>).spans;
      expect(spans).to.have.length(2);
      const [billing, other] = spans;
      expect(billing!.spanId).to.match(/^[0-9a-f]{16}$/);
      expect(billing!.endTimeMs).to.equal(1_700_000_000_123);
      // Scalars asked for come through typed; the array attribute and the others are left out.
      expect(Object.fromEntries(billing!.attributes)).to.deep.equal({
        [ATTR_TOLLGATE_RESERVATION_ID]: 'r-1',
        [ATTR_TOLLGATE_RESERVATION_AMOUNT]: 4500,
        [ATTR_GEN_AI_USAGE_INPUT_TOKENS]: 1000,
        ratio: 0.25,
        streamed: true,
        ключ: 7,
      });
      expect(Object.fromEntries(other!.attributes)).to.deep.equal({ other: 'span' });
    });
  }

  it('reads OTLP/JSON int64 as decimal strings, ignores unknown keys and empty envelopes', () => {
    const body = JSON.stringify({
      resourceSpans: [
        { resource: { attributes: [] }, scopeSpans: [{ spans: [] }], futureField: 1 },
        {
          scopeSpans: [
            {
              scope: { name: 'x' },
              spans: [
                {
                  spanId: 'AABBCCDDEEFF0011',
                  endTimeUnixNano: '1700000000123000000',
                  attributes: [
                    { key: 'big', value: { intValue: '9007199254740993' } },
                    { key: 'n', value: { intValue: '42' } },
                    { key: 'd', value: { doubleValue: 'Infinity' } },
                    { key: 'e', value: { doubleValue: '-1.5e3' } },
                    { key: 'bytes', value: { bytesValue: 'AAE=' } },
                    { key: 'empty', value: {} },
                    // null is the JSON mapping's default: not set, as if absent.
                    { key: 'nullValue', value: null },
                    { key: 'nullMember', value: { stringValue: null } },
                  ],
                },
              ],
            },
          ],
        },
      ],
    });
    const result = decodeExportRequest(Buffer.from(body), 'json', KEYS);
    expect(result.ok).to.equal(true);
    const [span] = (result as Extract<DecodeResult, { ok: true }>).spans;
    expect(span!.endTimeMs).to.equal(1_700_000_000_123);
    // 2^53 + 1 cannot be a safe integer: every reader refuses it rather than round it.
    expect(Number.isSafeInteger(span!.attributes.get('big'))).to.equal(false);
    expect(span!.attributes.get('n')).to.equal(42);
    expect(span!.attributes.get('d')).to.equal(Infinity);
    expect(span!.attributes.get('e')).to.equal(-1500);
    expect([...span!.attributes.keys()]).to.deep.equal(['big', 'n', 'd', 'e']);
    expect(decodeExportRequest(Buffer.from('{}'), 'json', KEYS)).to.deep.equal({ ok: true, spans: [] });
  });

  const malformed: Array<[string, OtlpEncoding, string | Buffer, RegExp]> = [
    ['JSON syntax', 'json', '{"resourceSpans": [', /malformed OTLP json body/],
    ['a JSON array', 'json', '[]', /request must be an object/],
    ['spans not an array', 'json', '{"resourceSpans":[{"scopeSpans":[{"spans":{}}]}]}', /spans must be an array/],
    ['intValue not an integer', 'json', '{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"a","value":{"intValue":1.5}}]}]}]}]}', /attribute a: intValue/],
    // Number() would read these as 0, 0 and 1000: a token count nobody sent.
    ...['', ' ', '0x3e8'].map((text): [string, OtlpEncoding, string, RegExp] => [
      `doubleValue ${JSON.stringify(text)}`,
      'json',
      JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [{ attributes: [{ key: 'a', value: { doubleValue: text } }] }] }] }] }),
      /attribute a: doubleValue must be a number/,
    ]),
    ['stringValue not a string', 'json', '{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":[{"key":"a","value":{"stringValue":1}}]}]}]}]}', /stringValue must be a string/],
    ['protobuf garbage', 'protobuf', Buffer.from('this is not protobuf at all, just text'), /malformed OTLP protobuf body/],
    ['truncated protobuf', 'protobuf', Buffer.from([0x0a, 0x10, 0x12]), /runs past the end of the body/],
    // resource_spans of 3 bytes holding scope_spans of 5: the inner message overruns the outer.
    ['a message longer than its parent', 'protobuf', Buffer.from([0x0a, 0x03, 0x12, 0x05, 0x08, 0x01, 0x08, 0x01, 0x08, 0x01]), /runs past the end of its message/],
  ];
  for (const [name, encoding, body, error] of malformed) {
    it(`refuses ${name}`, () => {
      const result = decodeExportRequest(Buffer.from(body), encoding, KEYS);
      expect(result.ok).to.equal(false);
      expect((result as { error: string }).error).to.match(error);
    });
  }

  describe('fuzzing: the decoder always answers', () => {
    it('arbitrary bytes, either encoding', () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 512 }), fc.constantFrom<OtlpEncoding>('protobuf', 'json'), (bytes, encoding) => {
          assertAnswers(decodeExportRequest(bytes, encoding, KEYS));
        }),
        { numRuns: 2000 },
      );
    });

    for (const encoding of ['protobuf', 'json'] as const) {
      it(`real ${encoding} bodies with bytes flipped, cut or spliced`, () => {
        const body = bodies[encoding];
        const mutation = fc.record({
          flips: fc.array(fc.tuple(fc.nat(body.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }),
          cut: fc.nat(body.length),
          splice: fc.uint8Array({ maxLength: 16 }),
        });
        fc.assert(
          fc.property(mutation, ({ flips, cut, splice }) => {
            const mutated = Buffer.from(body);
            for (const [at, value] of flips) mutated[at] = value;
            assertAnswers(decodeExportRequest(Buffer.concat([mutated.subarray(0, cut), splice, mutated.subarray(cut)]), encoding, KEYS));
            assertAnswers(decodeExportRequest(mutated.subarray(0, cut), encoding, KEYS));
          }),
          { numRuns: 2000 },
        );
      });
    }

    it('arbitrary JSON documents', () => {
      fc.assert(
        fc.property(fc.jsonValue(), (value) => assertAnswers(decodeExportRequest(Buffer.from(JSON.stringify(value) ?? ''), 'json', KEYS))),
        { numRuns: 2000 },
      );
    });
  });

  describe('responses', () => {
    // The response schema written independently of collector/otlp.ts's, from trace_service.proto.
    const Response = protobuf
      .parse(
        'syntax = "proto3"; message R { P partial_success = 1; } message P { int64 rejected_spans = 1; string error_message = 2; }',
      )
      .root.lookupType('R');

    it('full success is an empty message in either encoding', () => {
      expect(encodeExportResponse('protobuf')).to.have.length(0);
      expect(JSON.parse(Buffer.from(encodeExportResponse('json')).toString())).to.deep.equal({});
    });

    it('partial success carries the count and the message', () => {
      const partial = { rejectedSpans: 3, errorMessage: '3 billing span(s) rejected' };
      const decoded = Response.toObject(Response.decode(encodeExportResponse('protobuf', partial)), { longs: Number });
      expect(decoded).to.deep.equal({ partialSuccess: partial });
      expect(JSON.parse(Buffer.from(encodeExportResponse('json', partial)).toString())).to.deep.equal({
        partialSuccess: { rejectedSpans: '3', errorMessage: '3 billing span(s) rejected' },
      });
    });
  });

  it('tells the encoding from the content type', () => {
    expect(encodingOf('application/x-protobuf')).to.equal('protobuf');
    expect(encodingOf('Application/JSON; charset=utf-8')).to.equal('json');
    expect(encodingOf('text/plain')).to.equal(undefined);
    expect(encodingOf(undefined)).to.equal(undefined);
  });
});
