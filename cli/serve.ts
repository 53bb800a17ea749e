/**
 * `tollgate serve`: the gateway with the middleware mounted, /metrics and /healthz, and — in the
 * embedded default — the settlement processor in the same process, fed over OTLP/HTTP on
 * loopback exactly as a Collector would feed it in production.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import http, { type Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createSettlementServer, startSweeper, type Sweeper } from '../collector/index.js';
import { openLedger } from '../ledger/index.js';
import { isWellFormedKey } from '../ledger/keys.js';
import { creditsToMicros } from '../ledger/money.js';
import type { Ledger, OverrunPolicy } from '../ledger/types.js';
import { defaultPricing } from '../plugin/default-pricing.js';
import { upstreamUrlProblem } from '../plugin/options.js';
import { loadPricing, type PricingTable } from '../plugin/pricing.js';
import { parseSigningKeys, type SigningKey } from '../plugin/signing.js';
import { expressServerClasses, tollgate } from '../plugin/index.js';
import { billingTracing } from './tracing.js';
import { parseCommandLine, UsageError } from './args.js';

export interface SeedAccount {
  id: string;
  key: string;
  /** Micro-credits for a new account; an existing one keeps its balance. */
  amount: number;
}

export interface ServeConfig {
  port: number;
  host: string;
  openaiUpstream: string | undefined;
  anthropicUpstream: string | undefined;
  openaiApiKey: string | undefined;
  anthropicApiKey: string | undefined;
  pricingFile: string | undefined;
  accounts: SeedAccount[];
  /** postgres://… or a PGlite data directory. */
  ledger: string;
  /** Send billing spans here (a Collector) instead of settling in this process. */
  otlpEndpoint: string | undefined;
  otlpToken: string | undefined;
  /** How long one span export may keep retrying before its spans count as dropped. */
  otlpTimeoutSeconds: number;
  /** Signs billing spans (TOLLGATE_SPAN_SIGNING_KEY=ID:SECRET); generated per process when settling in-process. */
  spanSigningKey: SigningKey | undefined;
  overrunPolicy: OverrunPolicy;
  chatUsage: 'reserve' | 'inject';
  ledgerOutage: 'reject' | 'forward';
  maxBodyBytes: number | undefined;
  reservationTtlSeconds: number | undefined;
  upstreamConnectTimeoutMs: number | undefined;
  upstreamIdleTimeoutMs: number | undefined;
  /** On close (SIGTERM), how long streams in flight may run on before they are cut. */
  shutdownTimeoutSeconds: number;
  /** Seconds between the in-process sweeper's passes over stale reservations. */
  sweepIntervalSeconds: number;
  /** Serve /metrics on its own listener (e.g. an internal interface) instead of the gateway port. */
  metricsPort: number | undefined;
  metricsHost: string;
}

export const DEFAULT_LEDGER_DIR = './.tollgate/ledger';

function integer(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`--${flag} must be a positive integer, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** A whole number of seconds, at least 1 (a sweep every 0 s would spin). */
export function seconds(flag: string, value: string | undefined): number {
  const number = integer(flag, value)!;
  if (number < 1) throw new UsageError(`--${flag} must be at least 1, got ${JSON.stringify(value)}`);
  return number;
}

/** A TCP port; 0 asks the system for a free one. */
export function port(flag: string, value: string | undefined): number | undefined {
  const number = integer(flag, value);
  if (number !== undefined && number > 65535) throw new UsageError(`--${flag} must be a port from 0 to 65535, got ${JSON.stringify(value)}`);
  return number;
}

/** The middleware's own rule for upstream URLs, as a usage error naming the flag. */
function upstreamUrl(flag: string, value: string | undefined): string | undefined {
  const problem = value === undefined ? undefined : upstreamUrlProblem(value);
  if (problem !== undefined) throw new UsageError(`--${flag} must be ${problem.expected}, got ${JSON.stringify(problem.shown)}`);
  return value;
}

/**
 * Where billing spans go. Checked here: `collector:4318` parses as a URL of scheme `collector:`,
 * and the server started, then dropped every span (each request settled at its reservation).
 */
function otlpEndpoint(value: string | undefined): string | undefined {
  if (value === undefined || (URL.canParse(value) && ['http:', 'https:'].includes(new URL(value).protocol))) return value;
  throw new UsageError(`--otlp-endpoint must be an http(s) URL, got ${JSON.stringify(value)}`);
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new UsageError(`--${flag} must be one of ${allowed.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return value as T;
}

function seedAccount(spec: string): SeedAccount {
  const match = /^([^:]+):([^:]+):([^:]+)$/.exec(spec);
  if (!match) throw new UsageError(`--account must be ID:KEY:CREDITS, got ${JSON.stringify(spec)}`);
  const [, id, key, credits] = match as unknown as [string, string, string, string];
  if (!isWellFormedKey(key)) throw new UsageError(`--account ${JSON.stringify(spec)}: the key must be printable, without spaces`);
  try {
    return { id, key, amount: creditsToMicros(credits) };
  } catch (error) {
    throw new UsageError(`--account ${JSON.stringify(spec)}: ${(error as Error).message}`);
  }
}

/** Seeds name each account and each key once: a second one would be ignored or fail half-way. */
function distinctSeeds(accounts: SeedAccount[]): SeedAccount[] {
  for (const field of ['id', 'key'] as const) {
    const seen = new Set<string>();
    for (const account of accounts) {
      if (seen.has(account[field])) throw new UsageError(`--account: ${field === 'id' ? 'account' : 'key'} ${JSON.stringify(account[field])} is given twice`);
      seen.add(account[field]);
    }
  }
  return accounts;
}

export function parseServeArgs(argv: string[], env: NodeJS.ProcessEnv): ServeConfig {
  const { values } = parseCommandLine(argv, {
    port: { type: 'string', default: '8080' },
    host: { type: 'string', default: '127.0.0.1' },
    'openai-upstream': { type: 'string' },
    'anthropic-upstream': { type: 'string' },
    pricing: { type: 'string' },
    account: { type: 'string', multiple: true, default: [] },
    ledger: { type: 'string' },
    'otlp-endpoint': { type: 'string' },
    'otlp-timeout': { type: 'string', default: '30' },
    'overrun-policy': { type: 'string' },
    'chat-usage': { type: 'string' },
    'ledger-outage': { type: 'string' },
    'max-body-bytes': { type: 'string' },
    'reservation-ttl': { type: 'string' },
    'upstream-connect-timeout': { type: 'string' },
    'upstream-idle-timeout': { type: 'string' },
    'shutdown-timeout': { type: 'string', default: '30' },
    'sweep-interval': { type: 'string', default: '10' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string', default: '127.0.0.1' },
  });
  return {
    port: port('port', values.port)!,
    host: values.host!,
    openaiUpstream: upstreamUrl('openai-upstream', values['openai-upstream']),
    anthropicUpstream: upstreamUrl('anthropic-upstream', values['anthropic-upstream']),
    openaiApiKey: env.OPENAI_API_KEY || undefined,
    anthropicApiKey: env.ANTHROPIC_API_KEY || undefined,
    pricingFile: values.pricing,
    accounts: distinctSeeds(values.account!.map(seedAccount)),
    ledger: values.ledger ?? (env.DATABASE_URL || DEFAULT_LEDGER_DIR),
    otlpEndpoint: otlpEndpoint(values['otlp-endpoint']),
    otlpToken: env.TOLLGATE_OTLP_TOKEN || undefined,
    otlpTimeoutSeconds: seconds('otlp-timeout', values['otlp-timeout']),
    spanSigningKey: env.TOLLGATE_SPAN_SIGNING_KEY ? parseSigningKeys(env.TOLLGATE_SPAN_SIGNING_KEY, 'TOLLGATE_SPAN_SIGNING_KEY')[0] : undefined,
    overrunPolicy: oneOf('overrun-policy', values['overrun-policy'], ['cap', 'charge'], 'cap'),
    chatUsage: oneOf('chat-usage', values['chat-usage'], ['reserve', 'inject'], 'reserve'),
    ledgerOutage: oneOf('ledger-outage', values['ledger-outage'], ['reject', 'forward'], 'reject'),
    maxBodyBytes: integer('max-body-bytes', values['max-body-bytes']),
    reservationTtlSeconds: integer('reservation-ttl', values['reservation-ttl']),
    upstreamConnectTimeoutMs: integer('upstream-connect-timeout', values['upstream-connect-timeout']),
    upstreamIdleTimeoutMs: integer('upstream-idle-timeout', values['upstream-idle-timeout']),
    shutdownTimeoutSeconds: integer('shutdown-timeout', values['shutdown-timeout'])!,
    sweepIntervalSeconds: seconds('sweep-interval', values['sweep-interval']),
    metricsPort: port('metrics-port', values['metrics-port']),
    metricsHost: values['metrics-host']!,
  };
}

export interface RunningGateway {
  url: string;
  /** Where /metrics is served: the gateway's own URL unless --metrics-port moved it. */
  metricsUrl: string;
  /** The in-process settlement endpoint, when spans are settled here. */
  settlementUrl: string | undefined;
  ledger: Ledger;
  close(): Promise<void>;
}

async function seed(ledger: Ledger, accounts: SeedAccount[]): Promise<void> {
  // A key of another account would fail its addKey after earlier seeds (its own account
  // included) were written: checked for every seed before anything is.
  const owners = await Promise.all(accounts.map(({ key }) => ledger.authenticate(key)));
  accounts.forEach(({ id }, i) => {
    if (owners[i] !== null && owners[i] !== id) throw new UsageError(`--account ${id}: its key belongs to another account`);
  });
  for (const [i, { id, key, amount }] of accounts.entries()) {
    if ((await ledger.account(id)) === null) await ledger.createAccount(id, amount);
    if (owners[i] !== id) await ledger.addKey(id, key);
  }
}

export function listen(server: Server, port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const address = server.address() as AddressInfo;
      resolve(`http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`);
    });
  });
}

const close = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

/**
 * Starts everything, and writes the seed accounts last: a start that fails (a port in use, a bad
 * pricing file) has written nothing, and stops what it had started, so that the process exits.
 */
export async function startGatewayServer(config: ServeConfig): Promise<RunningGateway> {
  const pricing = config.pricingFile ? await loadPricing(config.pricingFile) : defaultPricing();
  const ledger = await openLedger(config.ledger);
  /** What to stop, last started first: when the start fails, and on close() after the drain. */
  const started: Array<() => Promise<void>> = [() => ledger.close()];
  try {
    const gateway = await startOn(ledger, pricing, config, started);
    await seed(ledger, config.accounts);
    return gateway;
  } catch (error) {
    for (const stop of started.reverse()) await stop().catch(() => {});
    throw error;
  }
}

async function startOn(
  ledger: Ledger,
  pricing: PricingTable,
  config: ServeConfig,
  started: Array<() => Promise<void>>,
): Promise<RunningGateway> {
  const registries = [new Registry()];
  // Process metrics (RSS, event-loop lag, GC, handles) once, on the gateway's registry: the
  // registries are merged for /metrics, so the settlement one must not have them too.
  collectDefaultMetrics({ register: registries[0] });

  let settlement: { server: Server; sweeper: Sweeper; url: string } | undefined;
  let otlpEndpoint = config.otlpEndpoint;
  let otlpToken = config.otlpToken;
  let spanSigningKey = config.spanSigningKey;
  if (otlpEndpoint === undefined) {
    // Loopback only, and still authenticated and signed: any local process could otherwise post spans.
    otlpToken = randomBytes(32).toString('base64url');
    spanSigningKey ??= { id: 'in-process', secret: randomBytes(32).toString('base64url') };
    const settlementRegistry = new Registry();
    registries.push(settlementRegistry);
    const server = createSettlementServer({
      ledger,
      pricing: [pricing],
      tokens: [otlpToken],
      signingKeys: [spanSigningKey],
      overrunPolicy: config.overrunPolicy,
      registry: settlementRegistry,
    });
    const url = await listen(server, 0, '127.0.0.1');
    started.push(() => close(server));
    const sweeper = startSweeper({ ledger, registry: settlementRegistry, intervalMs: config.sweepIntervalSeconds * 1000 });
    started.push(() => sweeper.stop());
    settlement = { server, sweeper, url };
    otlpEndpoint = `${url}/v1/traces`;
  }
  const tracing = billingTracing({
    endpoint: otlpEndpoint,
    token: otlpToken,
    timeoutMs: config.otlpTimeoutSeconds * 1000,
    registry: registries[0]!,
    logger: (message) => console.warn(message),
  });
  started.push(() => tracing.shutdown());

  const middleware = tollgate({
    ledger,
    pricing,
    openaiUpstream: config.openaiUpstream,
    anthropicUpstream: config.anthropicUpstream,
    openaiApiKey: config.openaiApiKey,
    anthropicApiKey: config.anthropicApiKey,
    chatUsage: config.chatUsage,
    ledgerOutage: config.ledgerOutage,
    maxBodyBytes: config.maxBodyBytes,
    reservationTtlSeconds: config.reservationTtlSeconds,
    upstreamConnectTimeoutMs: config.upstreamConnectTimeoutMs,
    upstreamIdleTimeoutMs: config.upstreamIdleTimeoutMs,
    tracerProvider: tracing.provider,
    spanSigningKey,
    registry: registries[0],
  });
  started.push(async () => middleware.close());
  const metrics = Registry.merge(registries);

  const serveMetrics = async (_req: Request, res: Response) => {
    res.type(metrics.contentType).send(await metrics.metrics());
  };
  let metricsServer: Server | undefined;
  if (config.metricsPort !== undefined) {
    metricsServer = http.createServer(express().disable('x-powered-by').get('/metrics', serveMetrics));
  }

  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  if (metricsServer === undefined) app.get('/metrics', serveMetrics);
  app.use(middleware);
  app.use((_req, res) => {
    res.status(404).json({ error: { message: 'not found', type: 'invalid_request_error' } });
  });
  // Express's default handler would print a stack trace: nothing internal leaks to clients.
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    console.error('tollgate: unexpected error', error);
    if (res.headersSent) res.destroy();
    else res.status(500).json({ error: { message: 'internal error', type: 'server_error' } });
  });
  // Requests and responses keep shared hidden classes through Express (server-classes.ts).
  const server = http.createServer(expressServerClasses(app), app);
  // Slow clients (slowloris) may not hold a connection open without sending: headers must arrive
  // within 15 s, a whole request body within 2 minutes (bodies are MBs; responses are not bound).
  server.headersTimeout = 15_000;
  server.requestTimeout = 120_000;
  const url = await listen(server, config.port, config.host);
  started.push(() => close(server));
  const metricsUrl = metricsServer ? await listen(metricsServer, config.metricsPort!, config.metricsHost) : url;
  if (metricsServer) started.push(() => close(metricsServer));

  return {
    url,
    metricsUrl: `${metricsUrl}/metrics`,
    settlementUrl: settlement?.url,
    ledger,
    // Graceful: stop accepting, let the streams in flight end (cut past the deadline, each with
    // its outcome); then the rest, last started first: the spans exported before settlement and
    // the ledger stop.
    close: async () => {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await middleware.drain(config.shutdownTimeoutSeconds * 1000);
      server.closeAllConnections();
      await stopped;
      for (const stop of [...started].reverse()) await stop();
    },
  };
}
