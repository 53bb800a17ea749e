#!/usr/bin/env node
/**
 * The `tollgate` command: serve (gateway), settle (settlement processor alone), and the ledger's
 * admin commands (accounts, keys, statement).
 */
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createSettlementServer, startSweeper } from '../collector/index.js';
import { LedgerError } from '../ledger/errors.js';
import { openLedger } from '../ledger/index.js';
import { defaultPricing } from '../plugin/default-pricing.js';
import { OptionError } from '../plugin/option-error.js';
import { loadPricing, PricingError } from '../plugin/pricing.js';
import { parseSigningKeys } from '../plugin/signing.js';
import { runAdminCommand, type WithLedger } from './admin.js';
import { parseDemoArgs, runDemo } from './demo.js';
import { parseCommandLine, UsageError } from './args.js';
import { DEFAULT_LEDGER_DIR, listen, parseServeArgs, port, seconds, startGatewayServer } from './serve.js';

const HELP = `Usage: tollgate <command> [options]

Commands:
  serve     Run the gateway (and, unless --otlp-endpoint is given, settlement in the same process)
            --port 8080 --host 127.0.0.1 --openai-upstream URL --anthropic-upstream URL
            --pricing FILE --account ID:KEY:CREDITS (repeatable) --ledger URL|DIR
            --otlp-endpoint URL (base URL, or the full …/v1/traces) --otlp-timeout SECONDS (30)
            --sweep-interval SECONDS (10) --overrun-policy cap|charge --chat-usage reserve|inject
            --max-body-bytes N --reservation-ttl SECONDS --shutdown-timeout SECONDS (30)
            --upstream-connect-timeout MS (10000) --upstream-idle-timeout MS (600000)
            --ledger-outage reject|forward (reject: 503 while the ledger is down)
            --metrics-port N --metrics-host ADDR (serve /metrics on its own listener)
            env: OPENAI_API_KEY, ANTHROPIC_API_KEY, DATABASE_URL, TOLLGATE_OTLP_TOKEN,
                 TOLLGATE_SPAN_SIGNING_KEY (ID:SECRET: signs billing spans for settlement)
  settle    Run the settlement processor alone (POST /v1/traces, GET /metrics)
            --port 4318 --host 127.0.0.1 --ledger URL|DIR --pricing FILE (repeatable; the built-in table is always known)
            --overrun-policy cap|charge --sweep-interval SECONDS (10)
            env: TOLLGATE_SETTLEMENT_TOKENS (comma-separated; required), DATABASE_URL,
                 TOLLGATE_SPAN_SIGNING_KEYS (ID:SECRET,…: spans must be signed with one of them)
  demo      Try it all on this machine: a simulated OpenAI upstream, the gateway and settlement on an
            in-memory ledger, a few hundred mixed requests, then a settlement report
            --requests N (300) --seed S (1) --concurrency N (8) --json
  accounts  create ID --credits N | topup ID --credits N | show ID [--json]
  keys      create ID | revoke KEY
  statement ID [--format csv|json]
            The admin commands take --ledger URL|DIR too (default: DATABASE_URL, else ${DEFAULT_LEDGER_DIR}).
            The embedded ledger is one process's at a time: stop the server before using them
            (another process is refused while it runs).
`;

function onSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const handler = () => {
    if (stopping) return;
    stopping = true;
    stop().then(
      () => process.exit(0),
      (error) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}

async function serve(argv: string[]): Promise<void> {
  const config = parseServeArgs(argv, process.env);
  const gateway = await startGatewayServer(config);
  const base = gateway.url;
  console.log(`Tollgate gateway listening on ${base}
  ledger:     ${config.ledger.startsWith('postgres') ? 'PostgreSQL' : `embedded (${config.ledger})`}
  settlement: ${gateway.settlementUrl ? `in-process (${gateway.settlementUrl}/v1/traces)` : config.otlpEndpoint}
  upstreams:  ${config.openaiUpstream ?? 'https://api.openai.com'} (OpenAI), ${config.anthropicUpstream ?? 'https://api.anthropic.com'} (Anthropic)
  metrics:    ${gateway.metricsUrl}

Next:
  1. Give a client an account and a key, e.g. restart with (plus the options you gave)
       npx tollgate serve --account alice:tg-alice-key:10
     (or stop the server, run npx tollgate accounts create alice --credits 10 && npx tollgate keys create alice,
     start it again and use the key printed instead of tg-alice-key below)
  2. Point an SDK at the gateway with that key:
       OPENAI_BASE_URL=${base}/v1 OPENAI_API_KEY=tg-alice-key node your-app.js
       ANTHROPIC_BASE_URL=${base} ANTHROPIC_API_KEY=tg-alice-key claude
  3. See what it cost: npx tollgate statement alice (with the server stopped, on the embedded ledger)
`);
  onSignals(() => gateway.close());
}

async function settle(argv: string[]): Promise<void> {
  const { values } = parseCommandLine(argv, {
    port: { type: 'string', default: '4318' },
    host: { type: 'string', default: '127.0.0.1' },
    ledger: { type: 'string' },
    pricing: { type: 'string', multiple: true, default: [] },
    'overrun-policy': { type: 'string', default: 'cap' },
    'sweep-interval': { type: 'string', default: '10' },
  });
  // "tok1, tok2" is two tokens, the second without its space.
  const tokens = (process.env.TOLLGATE_SETTLEMENT_TOKENS ?? '')
    .split(',')
    .map((token) => token.trim())
    .filter((token) => token !== '');
  if (tokens.length === 0) throw new UsageError('TOLLGATE_SETTLEMENT_TOKENS must name at least one bearer token');
  const policy = values['overrun-policy'];
  if (policy !== 'cap' && policy !== 'charge') throw new UsageError(`--overrun-policy must be cap or charge, got ${JSON.stringify(policy)}`);
  const listenPort = port('port', values.port)!;
  const sweepSeconds = seconds('sweep-interval', values['sweep-interval']);
  const signingKeys = parseSigningKeys(process.env.TOLLGATE_SPAN_SIGNING_KEYS ?? '', 'TOLLGATE_SPAN_SIGNING_KEYS');
  // The built-in table too, whatever the files: a gateway started without --pricing reserves with
  // it, and no file names it. A span is priced only by the table of its own version.
  const pricing = [...(await Promise.all(values.pricing!.map(loadPricing))), defaultPricing()];
  const ledger = await openLedger(values.ledger ?? (process.env.DATABASE_URL || DEFAULT_LEDGER_DIR));
  if (signingKeys.length === 0) {
    console.warn('tollgate settle: TOLLGATE_SPAN_SIGNING_KEYS is not set: billing spans are accepted unsigned');
  }
  // One registry for the endpoint's and the sweeper's metrics: /metrics shows both.
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const server = createSettlementServer({ ledger, pricing, tokens, signingKeys, overrunPolicy: policy, registry });
  let url: string;
  try {
    url = await listen(server, listenPort, values.host!);
  } catch (error) {
    // A port in use: nothing is running yet but the ledger, which would keep the process alive.
    await ledger.close();
    throw error;
  }
  const sweeper = startSweeper({ ledger, registry, intervalMs: sweepSeconds * 1000 });
  console.log(`Tollgate settlement listening on ${url}/v1/traces`);
  onSignals(async () => {
    await sweeper.stop();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await ledger.close();
  });
}

async function admin(argv: string[]): Promise<number> {
  // --ledger URL or --ledger=URL, anywhere; the rest is the admin command's.
  const isLedgerFlag = (arg: string) => arg === '--ledger' || arg.startsWith('--ledger=');
  const at = argv.findIndex(isLedgerFlag);
  const given = at < 0 ? undefined : argv[at] === '--ledger' ? argv[at + 1] : argv[at]!.slice('--ledger='.length);
  if (at >= 0 && given === undefined) throw new UsageError('--ledger needs a value');
  const rest = at < 0 ? argv : [...argv.slice(0, at), ...argv.slice(at + (argv[at] === '--ledger' ? 2 : 1))];
  // Another one would reach the admin command as an option it does not know.
  if (rest.some(isLedgerFlag)) throw new UsageError('--ledger is given more than once');
  const withLedger: WithLedger = async (use) => {
    const ledger = await openLedger(given ?? (process.env.DATABASE_URL || DEFAULT_LEDGER_DIR));
    try {
      await use(ledger);
    } finally {
      await ledger.close();
    }
  };
  return runAdminCommand(rest, withLedger, (line) => console.log(line), (line) => console.error(line));
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (rest.includes('--help') || rest.includes('-h')) {
    console.log(HELP);
    return 0;
  }
  switch (command) {
    case 'serve':
      await serve(rest);
      return 0;
    case 'settle':
      await settle(rest);
      return 0;
    case 'demo':
      return runDemo(parseDemoArgs(rest));
    case 'accounts':
    case 'keys':
    case 'statement':
      return admin(argv);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(HELP);
      return 0;
    default:
      console.error(`tollgate: unknown command ${JSON.stringify(command)}\n\n${HELP}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (error) => {
    // node:util parseArgs throws TypeErrors coded ERR_PARSE_ARGS_… for unknown options, missing
    // values and stray arguments: the user's mistake, not a crash to show a stack trace for.
    const code = (error as { code?: unknown })?.code;
    const usage = error instanceof UsageError || (typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_'));
    // What the operator can act on from its message alone: a bad pricing file or option, a ledger
    // refusal, a system error (a port in use, a database that refuses connections). A stack trace
    // is for anything else: a bug.
    const explained =
      error instanceof PricingError || error instanceof OptionError || error instanceof LedgerError || (typeof code === 'string' && /^E[A-Z]+$/.test(code));
    if (usage) console.error(`tollgate: ${(error as Error).message} (tollgate --help lists the options)`);
    else console.error(explained ? `tollgate: ${(error as Error).message}` : error);
    process.exitCode = usage ? 2 : 1;
  },
);
