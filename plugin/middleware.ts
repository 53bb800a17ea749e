/**
 * tollgate(): read and check the request, reserve its upper-bound cost on the account of the
 * client's key, then hand it to express-http-proxy and meter the response on the side.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { Registry } from 'prom-client';
import { LedgerError } from '../ledger/errors.js';
import { isWellFormedKey } from '../ledger/keys.js';
import { sendError, type GatewayErrorKind } from './errors.js';
import { estimateReservation } from './estimate.js';
import { InFlightRequests, type Tracked } from './in-flight.js';
import { MeteredRequest, type MeteredRequestInit } from './metering.js';
import { createGatewayMetrics } from './metrics.js';
import { hasControlCharacter, parseOptions, type ResolvedOptions } from './options.js';
import { createUpstream, restoreResponseHeaders, UpstreamConnectTimeout, type Upstream } from './proxy.js';
import { gatewayKey, readBody, type BodyResult } from './request.js';
import { routeFor, type Route } from './routes.js';
import type { RejectionReason } from './semconv.js';
import { hasServerClass } from './server-classes.js';
import { Telemetry } from './telemetry.js';
import { throttledLogger } from './throttled-log.js';
import type { OutcomeRecord, Provider, TollgateOptions } from './types.js';

export interface TollgateMiddleware extends RequestHandler {
  /** The registry holding the gateway metrics; serve it on /metrics. */
  readonly registry: Registry;
  /**
   * Graceful shutdown, once the server stopped accepting: waits for the requests in flight to
   * reach their outcome, aborting those still running after `deadlineMs` (outcome
   * upstream_error; their reservations settle like any other). A request still being admitted
   * then (its body still arriving, say) is cut too: nothing of it went upstream.
   */
  drain(deadlineMs: number): Promise<void>;
  /** Closes the upstream keep-alive connections. */
  close(): void;
}

/** A request drain() waits for: in admission, then metered. */
interface InFlight extends Tracked {
  metered?: MeteredRequest;
  admitting?: ServerResponse;
}

/** A rejection before any credit is held: answered to the client, counted, no span. */
class Rejection {
  constructor(
    readonly kind: GatewayErrorKind,
    readonly reason: RejectionReason,
    readonly message: string,
    /** For the log only: may name internal hosts, never sent to the client. */
    readonly detail?: string,
    /** The body, when it was read before the rejection (a fail-open forward reuses it). */
    readonly body?: BodyResult,
  ) {}
}

const UNPARSED_MODEL = 'unknown';

export function tollgate(options: TollgateOptions): TollgateMiddleware {
  const settings = parseOptions(options);
  const telemetry = new Telemetry(settings.tracerProvider, createGatewayMetrics(settings.registry), settings.logger, settings.spanSigningKey);
  const onOutcome = guardHook(settings);
  /** Requests waiting for their upstream, so a proxy error can end the right one. */
  const pending = new WeakMap<ServerResponse, MeteredRequest>();
  /** Every request between its arrival and its outcome (or rejection), for drain(). */
  const inFlight = new InFlightRequests<InFlight>();

  const onUpstreamError = (provider: Provider) => (error: unknown, res: ServerResponse) => {
    const metered = pending.get(res);
    const clientLeft = res.destroyed;
    if (!clientLeft) {
      // The error itself stays in the log: its text names internal hosts and ports.
      if (metered?.abortedBecause !== undefined || error instanceof UpstreamConnectTimeout) {
        sendError(res, provider, 'upstream_timeout', 'the upstream API did not answer in time');
      } else {
        sendError(res, provider, 'upstream_unreachable', 'the upstream API could not be reached');
      }
      settings.logger(`tollgate: ${provider} upstream error: ${(error as Error)?.message ?? error}`);
    }
    metered?.endWithoutResponse(clientLeft);
  };
  const exchangeFor = (req: IncomingMessage) => pending.get((req as Request).res as ServerResponse);
  const upstreams: Record<Provider, Upstream> = {
    openai: createUpstream({
      base: settings.openaiUpstream,
      connectTimeoutMs: settings.upstreamConnectTimeoutMs,
      exchangeFor,
      authenticate: (headers) => {
        if (settings.openaiApiKey) headers.authorization = `Bearer ${settings.openaiApiKey}`;
      },
      onError: onUpstreamError('openai'),
    }),
    anthropic: createUpstream({
      base: settings.anthropicUpstream,
      connectTimeoutMs: settings.upstreamConnectTimeoutMs,
      exchangeFor,
      authenticate: (headers) => {
        if (settings.anthropicApiKey) headers['x-api-key'] = settings.anthropicApiKey;
      },
      onError: onUpstreamError('anthropic'),
    }),
  };

  async function meter(req: Request, res: Response, next: NextFunction, route: Route): Promise<void> {
    const arrivedAt = performance.now();
    const admitted = await admit(req, route, settings, arrivedAt);
    if (admitted instanceof Rejection && admitted.kind === 'ledger_unavailable' && settings.ledgerOutage === 'forward') {
      await forwardUnmetered(req, res, next, route, admitted);
      return;
    }
    if (admitted instanceof Rejection) {
      telemetry.metrics.series(route.provider, UNPARSED_MODEL).requests.rejected.add(1);
      telemetry.guard(() => telemetry.metrics.rejections.inc({ reason: admitted.reason }));
      if (admitted.detail !== undefined) settings.logger(`tollgate: ${admitted.message}: ${admitted.detail}`);
      sendError(res, route.provider, admitted.kind, admitted.message);
      return;
    }
    const metered = new MeteredRequest(admitted.init, telemetry, onOutcome);
    inFlight.track({ done: metered.done, metered });
    req.body = admitted.body;
    if (res.destroyed) {
      metered.endWithoutResponse(true);
      return;
    }
    pending.set(res, metered);
    res.on('pipe', (upstream: IncomingMessage) => {
      pending.delete(res);
      restoreResponseHeaders(upstream, res);
      metered.observe(upstream, res);
    });
    upstreams[route.provider].handler(req, res, next);
  }

  /** Fail open: the ledger is down and the operator chose availability over billing. */
  async function forwardUnmetered(req: Request, res: Response, next: NextFunction, route: Route, outage: Rejection) {
    const body = outage.body ?? (await readBody(req, settings.maxBodyBytes));
    if (!body.ok) {
      sendError(res, route.provider, body.kind === 'body_too_large' ? 'body_too_large' : 'invalid_request', body.message);
      return;
    }
    telemetry.guard(() => telemetry.metrics.unmetered.inc({ provider: route.provider }));
    logOutage(`tollgate: forwarding requests UNMETERED, the ledger is unavailable: ${outage.detail}`);
    req.body = body.body;
    upstreams[route.provider].handler(req, res, next);
  }
  const logOutage = throttledLogger(settings.logger, 10_000);

  const handler = (req: Request, res: Response, next: NextFunction) => {
    const route = req.method === 'POST' ? routeFor(req.path) : undefined;
    if (route === undefined) {
      next();
      return;
    }
    if (!hasServerClass(req)) shareHiddenClass(req);
    if (!hasServerClass(res)) shareHiddenClass(res);
    // Until it has a MeteredRequest (or is rejected), the request is tracked by its admission.
    inFlight.track({ done: meter(req, res, next, route).catch(next), admitting: res });
  };

  async function drain(deadlineMs: number): Promise<void> {
    const deadline = setTimeout(() => {
      for (const { metered, admitting } of inFlight.entries()) {
        metered?.abort('shutdown');
        // A client trickling its body would otherwise hold the drain until the server's own
        // request timeout.
        admitting?.destroy();
      }
    }, deadlineMs);
    try {
      while (inFlight.size > 0) await Promise.allSettled(inFlight.entries().map((entry) => entry.done));
    } finally {
      clearTimeout(deadline);
    }
  }

  return Object.assign(handler, {
    registry: settings.registry,
    drain,
    close: () => {
      upstreams.openai.close();
      upstreams.anthropic.close();
    },
  });
}

const SCRATCH = Symbol('tollgate scratch');

/**
 * Hand-written for the hot path, for servers not made with expressServerClasses (`tollgate serve`
 * is): there every property added to `req` and `res` after Express set their prototypes makes a
 * hidden class of that one object (server-classes.ts says why), and every first read of a
 * property costs 0.1–1 µs (measured alone: `res.headersSent` 507 ns against 48 on a plain
 * node:http response). A property deleted from such an object (whose hidden class has no parent
 * to go back to) turns it into a dictionary, and dictionaries with the same prototype share one
 * hidden class: each read is then a hash lookup of tens of ns. The property is a symbol, gone as
 * soon as it is added: nothing visible changes. About 2 µs per object.
 */
function shareHiddenClass(object: object): void {
  const scratch = object as Record<symbol, unknown>;
  scratch[SCRATCH] = undefined;
  delete scratch[SCRATCH];
}

interface Admitted {
  init: MeteredRequestInit;
  body: Buffer;
}

/** Everything that happens before the request may go upstream, ending in a reservation. */
async function admit(
  req: Request,
  route: Route,
  settings: ResolvedOptions,
  arrivedAt: number,
): Promise<Admitted | Rejection> {
  // The key is checked with the reserve, in the same ledger statement (one round trip, not two):
  // the body is read first, so a request with a wrong key and a bad body gets the body's error.
  const key = gatewayKey(req);
  if (key === undefined) return new Rejection('unauthenticated', 'unauthenticated', 'missing API key');
  // The ledger would refuse to look such a key up, which is no outage.
  if (!isWellFormedKey(key)) return new Rejection('unauthenticated', 'unauthenticated', 'invalid API key');
  // express-http-proxy re-encodes a form-typed body as key=value pairs on its way upstream: the
  // bytes the gateway priced would not be the bytes the upstream got.
  if (/^\s*application\/x-www-form-urlencoded\b/i.test(req.headers['content-type'] ?? '')) {
    return new Rejection('unsupported_encoding', 'invalid_request', 'request content-type application/x-www-form-urlencoded is not supported: send the JSON body as application/json');
  }
  const read = await readBody(req, settings.maxBodyBytes);
  if (!read.ok) {
    const reason = read.kind === 'body_too_large' ? 'body_too_large' : 'invalid_request';
    return new Rejection(read.kind === 'aborted' ? 'invalid_request' : read.kind, reason, read.message);
  }
  let body = read.body;
  let request: unknown;
  try {
    request = JSON.parse(body.toString('utf8'));
  } catch {
    return new Rejection('invalid_request', 'invalid_request', 'request body is not valid JSON');
  }
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    return new Rejection('invalid_request', 'invalid_request', 'request body must be a JSON object');
  }
  const fields = request as Record<string, unknown>;
  const model = fields.model;
  if (typeof model !== 'string' || model === '') {
    return new Rejection('invalid_request', 'invalid_request', 'request has no model');
  }
  if (!isModelName(model)) {
    return new Rejection('invalid_request', 'invalid_request', 'request has an invalid model (control characters, or over 256 characters)');
  }
  const price = settings.pricing.price(model, route.provider);
  if (price === undefined) {
    return new Rejection('unpriced_model', 'unpriced_model', `model ${JSON.stringify(model)} has no price`);
  }
  if (settings.chatUsage === 'inject' && route.streamUsageOption && fields.stream === true) {
    body = withStreamUsage(body, fields) ?? body;
  }

  let estimate;
  try {
    estimate = estimateReservation(read.body.length, fields, route, price, settings);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
  }
  // Past 2^53 - 1 micro-credits (absurd prices, a huge buffer): more than any account can hold.
  if (estimate === undefined || !Number.isSafeInteger(estimate.amount)) {
    return new Rejection(
      'insufficient_credits',
      'insufficient_credits',
      `insufficient credits: this request may cost more than ${Number.MAX_SAFE_INTEGER} micro-credits, more than any account holds`,
    );
  }
  const reservationId = randomUUID();
  let reserved;
  try {
    reserved = await settings.ledger.reserveForKey({
      reservationId,
      apiKey: key,
      amount: estimate.amount,
      ttlSeconds: settings.reservationTtlSeconds,
      provider: route.provider,
      model,
      pricingVersion: settings.pricing.version,
    });
  } catch (error) {
    // The ledger refusing an argument is no outage, and must never be forwarded unmetered.
    if (error instanceof LedgerError && error.code === 'ERR_LEDGER_INVALID_ARGUMENT') {
      return new Rejection('invalid_request', 'invalid_request', `the request cannot be reserved: ${error.message}`);
    }
    return ledgerUnavailable(error, read);
  }
  if (!reserved.ok && reserved.reason === 'unknown_key') {
    return new Rejection('unauthenticated', 'unauthenticated', 'invalid API key');
  }
  if (!reserved.ok) {
    return new Rejection(
      'insufficient_credits',
      'insufficient_credits',
      `insufficient credits: this request may cost up to ${estimate.amount} micro-credits and ${Math.max(reserved.available, 0)} are available`,
    );
  }
  return {
    body,
    init: {
      route,
      reservationId,
      accountId: reserved.accountId,
      requestModel: model,
      // Metric labels must stay few: free-form model names priced by the default share one label.
      modelLabel: price === settings.pricing.defaultPrice ? 'default' : model,
      price,
      pricingVersion: settings.pricing.version,
      amount: estimate.amount,
      maxUsageEventBytes: settings.maxUsageEventBytes,
      idleTimeoutMs: settings.upstreamIdleTimeoutMs,
      arrivedAt,
    },
  };
}

/**
 * Model names are short printable identifiers. The name is stored with the reservation and sent
 * on the span; a NUL cannot be stored in PostgreSQL text at all.
 */
function isModelName(model: string): boolean {
  return model.length <= 256 && !hasControlCharacter(model);
}

function ledgerUnavailable(error: unknown, body?: BodyResult): Rejection {
  return new Rejection(
    'ledger_unavailable',
    'ledger_unavailable',
    'the credit ledger is unavailable, retry later',
    String((error as Error)?.message ?? error),
    body,
  );
}

const INCLUDE_USAGE_MEMBER = Buffer.from(',"stream_options":{"include_usage":true}');
const CLOSING_BRACE = 0x7d;

/**
 * chatUsage 'inject': ask for the final usage chunk — the documented exception to forwarding the
 * body byte for byte. A request without stream_options (the usual one) gets the member appended
 * and keeps every other byte; one with stream_options null or without include_usage is
 * re-serialised (key order kept, whitespace not, integers past 2^53 rounded as JSON.parse read them).
 */
function withStreamUsage(raw: Buffer, fields: Record<string, unknown>): Buffer | undefined {
  const streamOptions = fields.stream_options;
  if (streamOptions === undefined) {
    // JSON.parse took the body for a non-empty object (it has a model): only whitespace can
    // follow its closing brace, so the last brace closes it.
    const end = raw.lastIndexOf(CLOSING_BRACE);
    return Buffer.concat([raw.subarray(0, end), INCLUDE_USAGE_MEMBER, raw.subarray(end)]);
  }
  if (typeof streamOptions === 'object' && streamOptions !== null && 'include_usage' in streamOptions) return undefined;
  const options = typeof streamOptions === 'object' && streamOptions !== null ? streamOptions : {};
  return Buffer.from(JSON.stringify({ ...fields, stream_options: { ...options, include_usage: true } }));
}

function guardHook(settings: ResolvedOptions): (record: OutcomeRecord) => void {
  const hook = settings.onOutcome;
  if (hook === undefined) return () => {};
  const ignored = (error: unknown) => settings.logger(`tollgate: onOutcome hook threw (ignored): ${(error as Error)?.message ?? error}`);
  return (record) => {
    try {
      // An async hook's rejection too: unhandled, it would end the process.
      const result: unknown = hook(record);
      if (result instanceof Promise) result.catch(ignored);
    } catch (error) {
      ignored(error);
    }
  };
}
