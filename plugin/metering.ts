/**
 * One metered request from its reservation to its single terminal outcome.
 *
 * The outcome is derived from facts gathered as the response flows, and decided exactly once,
 * when both sides are done (the client's response closed and the upstream body ended or broke)
 * and the side channel has drained:
 *   no upstream response      → cancelled if the client left first, else upstream_error
 *   upstream status not 2xx   → upstream_error
 *   terminal event seen       → completed | incomplete | failed (whoever closed afterwards:
 *                               Codex closes the moment it has read response.completed)
 *   client left before the end → cancelled
 *   otherwise                 → upstream_error (reset mid-stream, or ended without a terminal event)
 * Usage is whatever the extractor has learned by then: on a broken stream, the usage known so far.
 */
import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import type { ModelSeries } from './metrics.js';
import { costOf, type ModelPrice } from './pricing.js';
import type { Route } from './routes.js';
import { sideChannel, type SideChannel } from './side-channel.js';
import type { BillingSpan, Telemetry } from './telemetry.js';
import { TOKEN_TYPES, type Outcome, type TokenType, type UsageSource } from './semconv.js';
import type { OutcomeRecord } from './types.js';
import type { Usage, UsageExtractor } from './usage/types.js';

export interface MeteredRequestInit {
  route: Route;
  reservationId: string;
  accountId: string;
  requestModel: string;
  /** The model label on metrics: a priced model name, never free text from the client. */
  modelLabel: string;
  price: ModelPrice;
  pricingVersion: string;
  amount: number;
  maxUsageEventBytes: number;
  /** Abort the upstream exchange when it sends nothing for this long (waiting or mid-stream). */
  idleTimeoutMs: number;
  /** performance.now() when the request arrived. */
  arrivedAt: number;
}

const TOKEN_FIELDS: Record<TokenType, keyof Usage> = {
  input: 'inputTokens',
  output: 'outputTokens',
  cache_read: 'cacheReadInputTokens',
  cache_creation: 'cacheCreationInputTokens',
  reasoning: 'reasoningOutputTokens',
};

/** How often per idle timeout the idle timer looks for chunks (see armIdleTimer). */
const IDLE_CHECKS = 8;

export class MeteredRequest {
  private readonly span: BillingSpan | undefined;
  private readonly series: ModelSeries;
  private status: number | undefined;
  private extractor: UsageExtractor | undefined;
  private side: SideChannel | undefined;
  /** Who broke the exchange first, if anyone did. */
  private brokenBy: 'client' | 'upstream' | undefined;
  private clientClosed = false;
  private upstreamClosed = false;
  private firstByteSeen = false;
  private decided = false;
  /** The request to the upstream, once express-http-proxy has made it (proxy.ts hands it over). */
  private upstreamRequest: ClientRequest | undefined;
  /** The upstream's response, once it is piped to the client. */
  private upstreamResponse: IncomingMessage | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  /** performance.now() of the upstream's last sign of life noticed (its answer; chunks, at a check). */
  private lastActivity: number;
  /** Chunks received, and how many there were at the idle timer's last check. */
  private chunks = 0;
  private chunksChecked = 0;
  /** Why the gateway itself aborted the upstream exchange, if it did. */
  abortedBecause: 'idle' | 'shutdown' | undefined;
  /** Resolves once the outcome is recorded. */
  readonly done: Promise<void>;
  private resolveDone!: () => void;

  constructor(
    private readonly init: MeteredRequestInit,
    private readonly telemetry: Telemetry,
    private readonly onOutcome: (record: OutcomeRecord) => void,
  ) {
    const { route } = init;
    this.span = telemetry.startSpan({
      reservationId: init.reservationId,
      accountId: init.accountId,
      provider: route.provider,
      operation: route.operation,
      requestModel: init.requestModel,
      amount: init.amount,
      pricingVersion: init.pricingVersion,
      startTime: performance.timeOrigin + init.arrivedAt,
    });
    this.series = telemetry.metrics.series(route.provider, init.modelLabel);
    this.series.reserved.add(init.amount);
    this.done = new Promise((resolve) => (this.resolveDone = resolve));
    this.lastActivity = init.arrivedAt;
    this.armIdleTimer(init.idleTimeoutMs / IDLE_CHECKS);
  }

  /** express-http-proxy made the request to the upstream: aborting ends it, in any phase. */
  attach(request: ClientRequest): void {
    this.upstreamRequest = request;
    if (this.abortedBecause !== undefined) request.destroy(new UpstreamAborted(this.abortedBecause));
  }

  /** Ends the upstream exchange now (idle timeout, graceful shutdown past its deadline). */
  abort(because: 'idle' | 'shutdown'): void {
    this.abortedBecause ??= because;
    this.upstreamRequest?.destroy(new UpstreamAborted(because));
  }

  /**
   * The idle timeout. A chunk only counts itself: a stream brings hundreds of them, and re-arming a
   * timer on each, or even reading the clock on each (a boxed number per chunk), cost more than the
   * rest of the chunk's metering. The timer checks every eighth of the timeout whether chunks came
   * since its last check, and aborts once none came for idleTimeoutMs: never sooner, and at most an
   * eighth of it later. An upstream held back by a client that reads slowly (the pipe paused it)
   * is not idle.
   */
  private armIdleTimer(delayMs: number): void {
    this.idleTimer = setTimeout(() => {
      const now = performance.now();
      if (this.chunks !== this.chunksChecked || this.upstreamResponse?.isPaused()) {
        this.chunksChecked = this.chunks;
        this.lastActivity = now;
      }
      const { idleTimeoutMs } = this.init;
      const idleFor = now - this.lastActivity;
      if (idleFor >= idleTimeoutMs) this.abort('idle');
      else this.armIdleTimer(Math.min(idleTimeoutMs / IDLE_CHECKS, idleTimeoutMs - idleFor));
    }, delayMs);
    // A pending timeout must not keep a process alive that is otherwise done.
    this.idleTimer.unref();
  }

  /** express-http-proxy piped the upstream response into the client's: watch both, on the side. */
  observe(upstream: IncomingMessage, res: ServerResponse): void {
    this.upstreamResponse = upstream;
    this.status = upstream.statusCode;
    const served = isSuccess(this.status);
    if (served) {
      const streaming = /^text\/event-stream\b/i.test(upstream.headers['content-type'] ?? '');
      this.extractor = this.init.route.extractor(streaming, { maxEventBytes: this.init.maxUsageEventBytes });
      this.side = sideChannel(this.extractor, upstream.headers['content-encoding']);
    }
    this.lastActivity = performance.now();
    upstream.on('data', (chunk: Buffer) => {
      this.chunks++;
      if (!this.firstByteSeen) {
        this.firstByteSeen = true;
        this.telemetry.guard(() =>
          this.telemetry.metrics.timeToFirstByte.observe(
            { provider: this.init.route.provider },
            (performance.now() - this.init.arrivedAt) / 1000,
          ),
        );
      }
      this.side?.write(chunk);
    });
    const upstreamBroke = () => {
      this.brokenBy ??= 'upstream';
      // pipe() does not end the client's response when its source fails: without this the
      // client would wait forever on a response that can no longer complete.
      res.destroy();
    };
    upstream.on('aborted', upstreamBroke);
    upstream.on('error', upstreamBroke);
    upstream.on('close', () => {
      if (!upstream.complete) upstreamBroke();
      this.upstreamClosed = true;
      this.maybeDecide();
    });
    const clientClosed = () => {
      if (!upstream.complete) this.brokenBy ??= 'client';
      this.clientClosed = true;
      this.maybeDecide();
    };
    // The client may have left between the reservation and the upstream's answer.
    if (res.closed) clientClosed();
    else res.on('close', clientClosed);
  }

  /** The upstream never answered: it was unreachable, or the client left while we waited. */
  endWithoutResponse(clientLeft: boolean): void {
    this.brokenBy ??= clientLeft ? 'client' : 'upstream';
    this.clientClosed = this.upstreamClosed = true;
    this.maybeDecide();
  }

  private maybeDecide(): void {
    if (this.decided || !this.clientClosed || !this.upstreamClosed) return;
    this.decided = true;
    clearTimeout(this.idleTimer);
    const drained = this.side?.end(this.upstreamResponse?.complete !== true) ?? Promise.resolve();
    void drained.then(() => this.finish());
  }

  private outcome(): Outcome {
    if (this.status === undefined) return this.brokenBy === 'client' ? 'cancelled' : 'upstream_error';
    if (!isSuccess(this.status)) return 'upstream_error';
    const terminal = this.extractor?.state.terminal;
    if (terminal !== undefined) return terminal;
    return this.brokenBy === 'client' ? 'cancelled' : 'upstream_error';
  }

  private finish(): void {
    const { init, telemetry } = this;
    const { metrics } = telemetry;
    const state = this.extractor?.state;
    const usage = state && isKnown(state.usage) ? state.usage : undefined;
    // Billable only when final: the body's terminal event passed and both totals are there.
    // Anything less — a stream cut before its end (Anthropic's output count so far is a
    // placeholder), a count the provider sent mangled — settles at the reservation: a partial
    // count would bill less than the provider charged. So do counts whose cost is beyond what
    // money can be here (2^53 micro-credits): costOf refuses them, as settlement would.
    const final = state?.terminal !== undefined && usage?.inputTokens !== undefined && usage.outputTokens !== undefined;
    const cost = final ? billableCost(usage!, init.price) : undefined;
    const usageSource: UsageSource = cost !== undefined ? 'reported' : 'missing';
    const record: OutcomeRecord = {
      reservationId: init.reservationId,
      accountId: init.accountId,
      provider: init.route.provider,
      requestModel: init.requestModel,
      responseModel: state?.responseModel,
      reserved: init.amount,
      cost,
      outcome: this.outcome(),
      usage,
      usageSource,
      status: this.status,
    };
    telemetry.endSpan(this.span, record, state?.responseId);
    const { series } = this;
    series.requests[record.outcome].add(1);
    if (cost !== undefined) {
      series.cost.add(cost);
      if (cost > init.amount) series.overruns.add(1);
      for (const type of TOKEN_TYPES) {
        const tokens = usage![TOKEN_FIELDS[type]];
        if (tokens !== undefined) series.tokens[type].add(tokens);
      }
    } else if (isSuccess(this.status) && record.outcome !== 'upstream_error') {
      // A served response that carried no final usage. A stream the upstream broke is counted
      // as upstream_error instead: the dashboards' usage-missing ratio is over served requests.
      series.usageMissing.add(1);
    }
    const { provider } = init.route;
    telemetry.guard(() => {
      metrics.duration.observe({ provider, outcome: record.outcome }, (performance.now() - init.arrivedAt) / 1000);
      if (state?.parseErrors || this.side?.failed) metrics.parseErrors.inc({ provider });
    });
    try {
      this.onOutcome(record);
    } catch {
      // onOutcome is the user's hook, already wrapped by the middleware; nothing may escape here.
    }
    this.resolveDone();
  }
}

/** costOf, or undefined when the cost passes Number.MAX_SAFE_INTEGER micro-credits. */
function billableCost(usage: Usage, price: ModelPrice): number | undefined {
  try {
    return costOf(usage, price);
  } catch (error) {
    if (error instanceof RangeError) return undefined;
    throw error;
  }
}

class UpstreamAborted extends Error {
  constructor(because: 'idle' | 'shutdown') {
    super(`tollgate ended the upstream exchange (${because === 'idle' ? 'idle timeout' : 'shutdown'})`);
  }
}

function isSuccess(status: number | undefined): boolean {
  return status !== undefined && status >= 200 && status < 300;
}

/** True when the provider reported any count at all (the span then carries what it said). */
function isKnown(usage: Usage): boolean {
  for (const field in usage) if (usage[field as keyof Usage] !== undefined) return true;
  return false;
}
