/**
 * Reading what the client sent: its gateway key, and its body with a byte limit.
 */
import type { IncomingMessage } from 'node:http';
import getRawBody from 'raw-body';

/**
 * The gateway key, as the official SDKs send it: OpenAI's as `Authorization: Bearer`, Anthropic's
 * as `x-api-key`. Either header works on every route.
 */
export function gatewayKey(req: IncomingMessage): string | undefined {
  const apiKey = req.headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey !== '') return apiKey;
  const authorization = req.headers.authorization;
  if (authorization === undefined) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
  return match?.[1];
}

export type BodyResult =
  | { ok: true; body: Buffer }
  | { ok: false; kind: 'body_too_large' | 'invalid_request' | 'unsupported_encoding' | 'aborted'; message: string };

/**
 * Reads the body, counting the bytes actually read (a chunked body has no Content-Length to trust).
 * A body an earlier middleware already read as raw bytes (express.raw) is used as it is.
 */
export async function readBody(req: IncomingMessage & { body?: unknown }, limit: number): Promise<BodyResult> {
  if (Buffer.isBuffer(req.body)) {
    return req.body.length > limit ? tooLarge(limit) : { ok: true, body: req.body };
  }
  if (req.body !== undefined && req.body !== null && !req.readable) {
    return {
      ok: false,
      kind: 'invalid_request',
      message: 'the request body was already parsed by another middleware; mount tollgate() before body parsers',
    };
  }
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && encoding.toLowerCase() !== 'identity') {
    return { ok: false, kind: 'unsupported_encoding', message: `request content-encoding ${encoding} is not supported` };
  }
  try {
    return { ok: true, body: await getRawBody(req, { limit }) };
  } catch (error) {
    const type = (error as { type?: string }).type;
    if (type === 'entity.too.large') {
      // raw-body stops reading mid-body. Discard the rest, as Node does with a body nobody reads:
      // left paused, the connection hung, and a client still sending never read the 413.
      req.resume();
      return tooLarge(limit);
    }
    if (type === 'request.aborted') return { ok: false, kind: 'aborted', message: 'the client aborted the request' };
    return { ok: false, kind: 'invalid_request', message: 'the request body could not be read' };
  }
}

function tooLarge(limit: number): BodyResult {
  return { ok: false, kind: 'body_too_large', message: `request body exceeds the limit of ${limit} bytes` };
}
