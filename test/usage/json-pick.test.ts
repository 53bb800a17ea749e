import { expect } from 'chai';
import fc from 'fast-check';
import { pickJson, shapeOfPaths, type JsonShape } from '../../plugin/usage/json-pick.js';

const SHAPE: JsonShape = { type: true, response: { id: true, model: true, usage: { input_tokens: true, details: { cached: true } } } };

/** What JSON.parse gives, cut down to the members `shape` names (the same object when not one). */
function project(value: unknown, shape: JsonShape): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const picked: Record<string, unknown> = {};
  for (const [name, member] of Object.entries(value)) {
    if (!Object.hasOwn(shape, name)) continue;
    const inner = shape[name]!;
    picked[name] = inner === true ? member : project(member, inner);
  }
  return picked;
}

const pick = (text: string, shape = SHAPE) => pickJson(Buffer.from(text, 'utf8'), shape);

/** "usage" with an escape in its name: the same member to JSON.parse. */
const ESCAPED_USAGE = String.raw`us\u0061ge`;

/** An object's members as a list, so that duplicate and escaped names stay in its text. */
class Members {
  constructor(readonly list: [name: string, value: unknown][]) {}
}

/** Objects that carry the shape's members (or not) among others, at any depth, with any values. */
const documents = fc.letrec((tie) => ({
  value: fc.oneof(fc.jsonValue({ maxDepth: 3 }), tie('object')),
  object: fc
    .array(fc.tuple(fc.oneof(fc.constantFrom('type', 'response', 'id', 'model', 'usage', 'usag', 'input_tokens', 'details', 'cached', '__proto__', ESCAPED_USAGE), fc.string()), tie('value')), { maxLength: 8 })
    .map((list) => new Members(list as [string, unknown][])),
})).object;

/** JSON text of a document, formatted with `space` around its punctuation. */
function render(value: unknown, space: string): string {
  if (!(value instanceof Members)) return JSON.stringify(value, null, space);
  const parts = value.list.map(([name, member]) => `${name === ESCAPED_USAGE ? `"${name}"` : JSON.stringify(name)}:${space}${render(member, space)}`);
  return `{${space}${parts.join(`,${space}`)}${space}}`;
}

describe('pickJson', () => {
  it('reads what JSON.parse reads, for the members named, in any JSON object', () => {
    fc.assert(
      fc.property(documents, fc.constantFrom('', ' ', '\n', ' \t\r\n'), (members, space) => {
        const text = render(members, space);
        expect(pick(text)).to.deep.equal(project(JSON.parse(text), SHAPE));
      }),
      { numRuns: 2000 },
    );
  });

  it('throws for a document cut short, wherever it is cut', () => {
    fc.assert(
      fc.property(documents, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (members, at) => {
        const text = render(members, ' ');
        const cut = Buffer.from(text, 'utf8').subarray(0, Math.floor(at * Buffer.byteLength(text)));
        let parsed = true;
        try {
          JSON.parse(cut.toString('utf8'));
        } catch {
          parsed = false;
        }
        // A prefix that is itself a document (a number cut short: `12` of `123`) is one.
        if (!parsed) expect(() => pickJson(cut, SHAPE)).to.throw(SyntaxError);
      }),
      { numRuns: 2000 },
    );
  });

  it('reads escaped quotes and backslashes in skipped strings, and escaped member names', () => {
    const text = String.raw`{"note":"a \"usage\": {} \\","us\u0061ge":{"input_tokens":3},"response":{"text":"\\\"}","id":"r1"}}`;
    expect(pick(text, { usage: true, response: { id: true } })).to.deep.equal({ usage: { input_tokens: 3 }, response: { id: 'r1' } });
  });

  it('takes the last of duplicate members, as JSON.parse does', () => {
    expect(pick('{"type":"a","response":{"id":"x"},"type":"b","response":{"model":"m"}}')).to.deep.equal({ type: 'b', response: { model: 'm' } });
  });

  it('parses a member named whole even when the shape goes deeper, if it is no object', () => {
    expect(pick('{"response":null}')).to.deep.equal({ response: null });
    expect(pick('{"response":[{"id":1}]}')).to.deep.equal({ response: [{ id: 1 }] });
  });

  it('parses a document that is not an object whole', () => {
    expect(pick(' [1, {"type": 2}] ')).to.deep.equal([1, { type: 2 }]);
    expect(pick('"text"')).to.equal('text');
  });

  it('rejects what JSON.parse rejects on the way to the members it reads', () => {
    for (const text of ['{"type" "a"}', '{"other" 12, "type": "a"}', '{"type":"a" "id":1}', '{type:"a"}', '{"type":"a",}', '{"type":"a"} x', '{"usage":tru}', '{"type":}', '{"type":"a\u0001b"}', '{"ty\npe":"a"}']) {
      expect(() => pick(text, { type: true, usage: true }), text).to.throw(SyntaxError);
    }
  });

  it('only delimits the values it skips', () => {
    expect(pick('{"other": tru, "type": "a"}')).to.deep.equal({ type: 'a' });
  });

  it('never reads a member of the prototype chain as a shape', () => {
    expect(pick('{"constructor":{"id":1},"toString":2,"type":"t"}')).to.deep.equal({ type: 't' });
  });

  it('reads numbers as JSON.parse does, token counts and the rest', () => {
    const values = ['0', '7', '123456789012345', '1234567890123456789', '-3', '1.5', '1e3', '0.0', '-0'];
    for (const number of values) expect(pick(`{"type":${number}}`), number).to.deep.equal({ type: JSON.parse(number) });
    expect(() => pick('{"type":00}')).to.throw(SyntaxError);
    expect(() => pick('{"type":1x}')).to.throw(SyntaxError);
  });

  it('shapeOfPaths: one shape for paths that share their start; a whole value covers the paths under it', () => {
    expect(shapeOfPaths([['type'], ['response', 'id'], ['response', 'usage', 'input_tokens'], ['response', 'usage', 'details', 'cached']])).to.deep.equal({
      type: true,
      response: { id: true, usage: { input_tokens: true, details: { cached: true } } },
    });
    expect(shapeOfPaths([['a', 'b'], ['a'], ['a', 'c']])).to.deep.equal({ a: true });
  });
});
