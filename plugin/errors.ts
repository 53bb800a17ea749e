/**
 * Errors the gateway answers itself, shaped like each provider's own so that the official SDKs
 * surface them as they would the provider's (status, type and message).
 *
 * OpenAI: {"error": {"message", "type", "param", "code"}}
 *   https://platform.openai.com/docs/guides/error-codes
 * Anthropic: {"type": "error", "error": {"type", "message"}}
 *   https://docs.anthropic.com/en/api/errors
 */
import type { ServerResponse } from 'node:http';
import type { Provider } from './types.js';

export type GatewayErrorKind =
  | 'unauthenticated'
  | 'body_too_large'
  | 'invalid_request'
  | 'unsupported_encoding'
  | 'unpriced_model'
  | 'insufficient_credits'
  | 'ledger_unavailable'
  | 'upstream_unreachable'
  | 'upstream_timeout';

interface ErrorShape {
  status: number;
  openaiType: string;
  anthropicType: string;
}

const SHAPES: Record<GatewayErrorKind, ErrorShape> = {
  unauthenticated: { status: 401, openaiType: 'invalid_request_error', anthropicType: 'authentication_error' },
  body_too_large: { status: 413, openaiType: 'invalid_request_error', anthropicType: 'request_too_large' },
  invalid_request: { status: 400, openaiType: 'invalid_request_error', anthropicType: 'invalid_request_error' },
  unsupported_encoding: { status: 415, openaiType: 'invalid_request_error', anthropicType: 'invalid_request_error' },
  unpriced_model: { status: 400, openaiType: 'invalid_request_error', anthropicType: 'invalid_request_error' },
  insufficient_credits: { status: 402, openaiType: 'insufficient_quota', anthropicType: 'billing_error' },
  ledger_unavailable: { status: 503, openaiType: 'server_error', anthropicType: 'api_error' },
  upstream_unreachable: { status: 502, openaiType: 'server_error', anthropicType: 'api_error' },
  upstream_timeout: { status: 504, openaiType: 'server_error', anthropicType: 'api_error' },
};

/** Answers the request with a provider-shaped JSON error; does nothing if headers already went out. */
export function sendError(res: ServerResponse, provider: Provider, kind: GatewayErrorKind, message: string): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const shape = SHAPES[kind];
  const body =
    provider === 'anthropic'
      ? { type: 'error', error: { type: shape.anthropicType, message } }
      : { error: { message, type: shape.openaiType, param: null, code: kind } };
  const bytes = Buffer.from(JSON.stringify(body));
  // node:http, not Express's res.json: this module works the same under Express 4 and 5.
  res.statusCode = shape.status;
  res.setHeader('content-type', 'application/json');
  res.setHeader('content-length', bytes.length);
  if (kind === 'ledger_unavailable') res.setHeader('retry-after', '1');
  res.end(bytes);
}
