/**
 * The byte path: express-http-proxy in stream mode (no userResDecorator, userResHeaderDecorator or
 * skipToNextHandlerFilter, which would buffer the whole response), with upstream connections
 * kept alive and the headers made right in both directions.
 */
import http from 'node:http';
import https from 'node:https';
import type { ClientRequest, IncomingMessage, OutgoingHttpHeaders, RequestOptions, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { RequestHandler } from 'express';
import proxy from 'express-http-proxy';
import { DECODABLE_ENCODINGS } from './side-channel.js';

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) concern one connection and are never forwarded, nor are
 * the headers a Connection header names.
 */
const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'];
/** The client's gateway key: replaced by the upstream credential, never forwarded. */
const GATEWAY_CREDENTIALS = ['authorization', 'x-api-key'];
/**
 * `Expect: 100-continue` (curl sends it for bodies over 1 MB) was answered by this server, and
 * the body is read whole before it goes upstream: nothing is left to negotiate there. Forwarded,
 * it made Node send the upstream request's headers at once, and express-http-proxy's
 * Content-Length after that threw: a 502 for every such request.
 */
const NOT_FORWARDED = new Set([...HOP_BY_HOP, ...GATEWAY_CREDENTIALS, 'expect']);

const NONE: readonly string[] = [];

function connectionListed(value: string | string[] | undefined): readonly string[] {
  // The usual requests and responses (no Connection header, or `keep-alive`) list nothing to drop
  // that is not dropped anyway; this runs three times per request.
  if (value === undefined || value === 'keep-alive') return NONE;
  const text = Array.isArray(value) ? value.join(',') : value;
  return text
    .split(',')
    .map((token) => token.trim().toLowerCase())
    .filter((token) => token !== '');
}

/**
 * The client's accept-encoding, narrowed to codings the usage extractor can read on the side;
 * a coding the client refuses (`;q=0`) stays out.
 */
function decodableAcceptEncoding(value: string | string[] | undefined): string {
  const accepted = connectionListed(value)
    .map((entry) => entry.split(';').map((part) => part.trim()))
    .filter(([coding, ...params]) => {
      const refused = params.some((param) => /^q\s*=\s*0(?:\.0{0,3})?$/.test(param));
      return !refused && (DECODABLE_ENCODINGS as readonly string[]).includes(coding!);
    })
    .map(([coding]) => coding!);
  return accepted.length > 0 ? accepted.join(', ') : 'identity';
}

export interface UpstreamOptions {
  base: URL;
  connectTimeoutMs: number;
  /** Whoever may end this client request's upstream exchange (idle timeout, shutdown). */
  exchangeFor: (req: IncomingMessage) => UpstreamExchange | undefined;
  /** Sets the upstream credential on the outgoing headers (the client's gateway key never goes upstream). */
  authenticate: (headers: OutgoingHttpHeaders) => void;
  /** The upstream could not be reached, or the exchange failed before a response arrived. */
  onError: (error: unknown, res: ServerResponse) => void;
}

export interface UpstreamExchange {
  /** Receives the request to the upstream as soon as it exists. */
  attach(request: ClientRequest): void;
}

export interface Upstream {
  handler: RequestHandler;
  /** Closes the idle keep-alive connections. */
  close(): void;
}

export function createUpstream({ base, connectTimeoutMs, exchangeFor, authenticate, onError }: UpstreamOptions): Upstream {
  const secure = base.protocol === 'https:';
  // express-http-proxy sends `connection: close` upstream by default, paying a TCP (and TLS)
  // handshake on every request; a keep-alive agent reuses connections.
  const agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  limitConnectTime(agent, connectTimeoutMs, secure);
  handOverRequests(agent);
  const basePath = base.pathname.replace(/\/$/, '');
  const handler = proxy(base.origin, {
    https: secure,
    // req.body holds the raw bytes the middleware read; express-http-proxy forwards them as they are.
    parseReqBody: true,
    // Its default, 'utf-8', also sets Accept-Charset on every upstream request, over the client's own.
    reqBodyEncoding: null,
    proxyReqPathResolver: (req) => basePath + req.url,
    proxyReqOptDecorator: (options: RequestOptions, req: IncomingMessage) => {
      // Copied into a new object rather than deleted from this one: `delete` turns an object into
      // a slow dictionary that every later read of the headers pays for, on every request.
      const listed = connectionListed(req.headers.connection);
      const headers: OutgoingHttpHeaders = {};
      for (const [name, value] of Object.entries(options.headers as OutgoingHttpHeaders)) {
        if (!NOT_FORWARDED.has(name) && !listed.includes(name)) headers[name] = value;
      }
      authenticate(headers);
      headers['accept-encoding'] = decodableAcceptEncoding(req.headers['accept-encoding']);
      headers.connection = 'keep-alive';
      options.headers = headers;
      options.agent = agent;
      (options as Record<symbol, unknown>)[EXCHANGE] = exchangeFor(req);
      return options;
    },
    proxyErrorHandler: (error: unknown, res: ServerResponse) => onError(error, res),
  });
  return { handler, close: () => agent.destroy() };
}

const EXCHANGE = Symbol('tollgate upstream exchange');

/**
 * Hands each upstream request to its exchange (options[EXCHANGE], set above), so that the gateway
 * can end it. express-http-proxy makes the request itself, and the agent is the one place that
 * sees it: Node passes it the request with a copy of the options. (An AbortSignal in the options
 * would do too, but Node wires a signal to a request with listeners on both, and with one per
 * request the gateway's CPU per request was 1.37 and 1.25 times the bare proxy's against 1.30
 * and 1.18 without, in two back-to-back pairs of bench/proxy.ts runs.)
 */
function handOverRequests(agent: http.Agent): void {
  const agentInternals = agent as unknown as { addRequest: (request: ClientRequest, options: Record<symbol, unknown>) => void };
  const addRequest = agentInternals.addRequest.bind(agent);
  agentInternals.addRequest = (request, options) => {
    (options[EXCHANGE] as UpstreamExchange | undefined)?.attach(request);
    // The agent keeps the options of the request that opened a connection for as long as that
    // connection lives (its listeners close over them): left in, a keep-alive connection held
    // that first request's whole metering state, response and all. (Not `delete`, which makes the
    // object a slow dictionary; this is ClientRequest's own copy, made for the agent.)
    options[EXCHANGE] = undefined;
    addRequest(request, options);
  };
}

/**
 * Node has no connect timeout: a new connection that is not up (TLS included) in time is
 * destroyed, which fails the request waiting for it. A reused keep-alive socket is already up.
 */
function limitConnectTime(agent: http.Agent, timeoutMs: number, secure: boolean): void {
  const createConnection = (agent as unknown as { createConnection: (...args: unknown[]) => Socket }).createConnection.bind(agent);
  (agent as unknown as { createConnection: (...args: unknown[]) => Socket }).createConnection = (...args: unknown[]) => {
    const socket = createConnection(...args);
    const timer = setTimeout(() => socket.destroy(new UpstreamConnectTimeout(timeoutMs)), timeoutMs);
    socket.once(secure ? 'secureConnect' : 'connect', () => clearTimeout(timer));
    socket.once('close', () => clearTimeout(timer));
    return socket;
  };
}

export class UpstreamConnectTimeout extends Error {
  readonly code = 'ETOLLGATECONNECTTIMEOUT';
  constructor(timeoutMs: number) {
    super(`no connection to the upstream within ${timeoutMs} ms`);
  }
}

/**
 * express-http-proxy copies the upstream headers with Express's res.set, which rewrites
 * `text/event-stream` to `text/event-stream; charset=utf-8` and copies hop-by-hop headers of the
 * upstream connection. Called when the upstream body is piped in, before any byte is written.
 */
export function restoreResponseHeaders(upstream: IncomingMessage, res: ServerResponse): void {
  if (res.headersSent) return;
  const contentType = upstream.headers['content-type'];
  if (contentType !== undefined) res.setHeader('content-type', contentType);
  // Only what was copied: removing transfer-encoding from a ServerResponse makes Node drop
  // chunked framing and close the connection to end the body.
  for (const name of HOP_BY_HOP) if (res.hasHeader(name)) res.removeHeader(name);
  for (const name of connectionListed(upstream.headers.connection)) if (res.hasHeader(name)) res.removeHeader(name);
}
