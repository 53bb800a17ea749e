/**
 * `tollgate demo`: the whole loop on one machine, nothing to configure. A simulated OpenAI
 * upstream (cli/simulator.ts), the gateway with in-process settlement on an in-memory ledger
 * (cli/serve.ts), and a few hundred requests of every kind a metering gateway meets: completed,
 * cut at their output limit, left by the client mid-stream, over-running their reservation,
 * without usage, refused for lack of credits, failed upstream. Once every reservation is settled
 * it prints a settlement report whose figures are read back from the ledger.
 */
import { createHash } from 'node:crypto';
import { microsToCredits } from '../ledger/money.js';
import type { Ledger, OverrunPolicy, StatementLine } from '../ledger/types.js';
import { FAULT_HEADER, startSimulator, type Fault } from './simulator.js';
import { parseCommandLine, UsageError } from './args.js';
import { parseServeArgs, startGatewayServer } from './serve.js';

const DEMO_USAGE = `Usage: tollgate demo [--requests N (300)] [--seed S (1)] [--concurrency N (8)] [--json]`;

export interface DemoOptions {
  requests: number;
  /** Seeds the request mix: the same seed sends the same requests. */
  seed: number;
  concurrency: number;
  /** Print the report as JSON (micro-credits) instead of tables. */
  json: boolean;
}

export function parseDemoArgs(argv: string[]): DemoOptions {
  const { values } = parseCommandLine(argv, {
    requests: { type: 'string', default: '300' },
    seed: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '8' },
    json: { type: 'boolean', default: false },
  });
  const positive = (flag: string, value: string) => {
    if (!/^[1-9]\d*$/.test(value)) throw new UsageError(`--${flag} must be a positive integer, got ${JSON.stringify(value)}\n${DEMO_USAGE}`);
    return Number(value);
  };
  return {
    requests: positive('requests', values.requests!),
    seed: positive('seed', values.seed!),
    concurrency: positive('concurrency', values.concurrency!),
    json: values.json!,
  };
}

// ── The traffic ──────────────────────────────────────────────────────────────────────────────

/**
 * What a demo request is made to do; the gateway and the ledger decide what it ends as.
 * 'image_by_url': a picture the gateway's byte-based estimate cannot see, so it over-runs.
 */
type Kind = 'responses' | 'chat' | 'chat_without_usage' | 'client_leaves' | 'image_by_url' | Fault;

/** Shares of the mix; they add up to 1. */
const MIX: Array<[Kind, number]> = [
  ['responses', 0.35],
  ['chat', 0.2],
  ['chat_without_usage', 0.1],
  ['client_leaves', 0.1],
  ['image_by_url', 0.08],
  ['server_error', 0.1],
  ['reset', 0.07],
];

const MODELS = ['gpt-4.1-mini', 'gpt-4o-mini', 'gpt-5-mini'];
const OUTPUT_LIMITS = [128, 256, 512, 1024];
/** A short answer about a picture: the image's tokens outweigh what the reservation holds for output. */
const IMAGE_OUTPUT_LIMIT = 128;
const PROMPTS = [
  'Summarise the attached incident report in three bullet points.',
  'Write a haiku about credit ledgers.',
  'Translate "the reservation was released" into French, German and Japanese.',
  'Explain idempotent settlement to a new engineer.',
  'List five ways a streamed response can end.',
];

interface DemoAccount {
  id: string;
  key: string;
  /** Share of the requests sent with this account's key. */
  share: number;
  /** Opens with too few credits for its share of the traffic: its later requests get 402. */
  scarce: boolean;
}

const ACCOUNTS: DemoAccount[] = [
  { id: 'acme', key: 'tg-demo-acme', share: 0.45, scarce: false },
  { id: 'globex', key: 'tg-demo-globex', share: 0.35, scarce: false },
  { id: 'initech', key: 'tg-demo-initech', share: 0.2, scarce: true },
];
const ACCOUNT_MIX = ACCOUNTS.map((account): [DemoAccount, number] => [account, account.share]);
const AMPLE_CREDITS = '5';
/**
 * A scarce account's opening balance, per request of the run: about half of what its share of
 * the traffic costs, so that it runs dry part-way through whatever --requests says.
 */
const SCARCE_MICROS_PER_REQUEST = 40;

function openingCredits(account: DemoAccount, requests: number): string {
  return account.scarce ? microsToCredits(SCARCE_MICROS_PER_REQUEST * requests) : AMPLE_CREDITS;
}

interface PlannedRequest {
  kind: Kind;
  account: DemoAccount;
  path: '/v1/responses' | '/v1/chat/completions';
  body: string;
}

/**
 * A number in [0, 1) fixed by the seed, the request and what is being chosen for it: `--seed`
 * replays the same mix, and each choice is independent of the others.
 */
function roll(seed: number, request: number, choice: string): number {
  return createHash('sha256').update(`${seed}/${request}/${choice}`).digest().readUInt32BE(0) / 2 ** 32;
}

function weighted<T>(at: number, items: Array<[T, number]>): T {
  let rest = at;
  for (const [item, weight] of items) {
    rest -= weight;
    if (rest < 0) return item;
  }
  return items[items.length - 1]![0];
}

function plan(options: DemoOptions): PlannedRequest[] {
  return Array.from({ length: options.requests }, (_, i) => {
    const chance = (choice: string) => roll(options.seed, i, choice);
    const pick = <T>(choice: string, items: readonly T[]) => items[Math.floor(chance(choice) * items.length)]!;
    const kind = weighted(chance('kind'), MIX);
    const account = weighted(chance('account'), ACCOUNT_MIX);
    const model = pick('model', MODELS);
    const limit = kind === 'image_by_url' ? IMAGE_OUTPUT_LIMIT : pick('limit', OUTPUT_LIMITS);
    // The number makes every prompt different, and so every answer's length (see the simulator).
    const prompt = `${pick('prompt', PROMPTS)} (request ${i + 1})`;
    // Half of the clients that leave mid-stream use Chat Completions, the other half Responses.
    const chat = kind === 'chat' || kind === 'chat_without_usage' || (kind === 'client_leaves' && chance('api') < 0.5);
    if (chat) {
      const body = {
        model,
        messages: [{ role: 'user', content: prompt }],
        max_completion_tokens: limit,
        stream: true,
        ...(kind === 'chat_without_usage' ? {} : { stream_options: { include_usage: true } }),
      };
      return { kind, account, path: '/v1/chat/completions', body: JSON.stringify(body) };
    }
    const input =
      kind === 'image_by_url'
        ? [
            {
              role: 'user',
              content: [
                { type: 'input_text', text: 'What is in this picture?' },
                { type: 'input_image', image_url: `https://images.example.com/photo-${i + 1}.png`, detail: 'high' },
              ],
            },
          ]
        : prompt;
    return { kind, account, path: '/v1/responses', body: JSON.stringify({ model, input, max_output_tokens: limit, stream: true }) };
  });
}

/** What the client saw of one request. */
interface Sent {
  status: number;
  /** The client left before the end of the stream. */
  left: boolean;
}

async function send(gateway: string, request: PlannedRequest): Promise<Sent> {
  const headers: Record<string, string> = { authorization: `Bearer ${request.account.key}`, 'content-type': 'application/json' };
  if (request.kind === 'server_error' || request.kind === 'reset') headers[FAULT_HEADER] = request.kind;
  const controller = new AbortController();
  const response = await fetch(gateway + request.path, { method: 'POST', headers, body: request.body, signal: controller.signal });
  if (request.kind === 'client_leaves' && response.ok) {
    // Read the first chunk of the stream, then hang up, as a user pressing Stop does.
    await response.body!.getReader().read();
    controller.abort();
    return { status: response.status, left: true };
  }
  try {
    await response.arrayBuffer();
  } catch {
    // The upstream cut the stream ('reset'): the client sees the connection end early.
  }
  return { status: response.status, left: false };
}

/** A one-line progress bar on stderr, redrawn in place; silent when stderr is not a terminal. */
function progressBar(total: number): { tick(): void; done(): void } {
  const width = 30;
  let count = 0;
  const draw = () => {
    const filled = Math.round((count / total) * width);
    process.stderr.write(`\r  [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${count}/${total} requests`);
  };
  if (!process.stderr.isTTY) return { tick: () => {}, done: () => {} };
  draw();
  return {
    tick: () => {
      count++;
      draw();
    },
    done: () => process.stderr.write('\n'),
  };
}

async function drive(gateway: string, requests: PlannedRequest[], concurrency: number): Promise<Sent[]> {
  const sent: Sent[] = new Array(requests.length);
  const bar = progressBar(requests.length);
  let next = 0;
  const worker = async () => {
    while (next < requests.length) {
      const index = next++;
      sent[index] = await send(gateway, requests[index]!);
      bar.tick();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  bar.done();
  return sent;
}

async function waitUntilSettled(ledger: Ledger, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  // Every reservation exists by now (the gateway reserves before it answers); spans reach
  // settlement in batches at least every 50 ms (cli/tracing.ts).
  while ((await ledger.openReservations()) > 0) {
    if (Date.now() > deadline) throw new Error(`reservations still open after ${timeoutMs / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// ── The report ───────────────────────────────────────────────────────────────────────────────

/** Micro-credits, summed over the settled reservations of one outcome. */
export interface OutcomeTotals {
  requests: number;
  /** Reservations settled without usage (`tollgate.usage.source` missing). */
  usageMissing: number;
  reserved: number;
  charged: number;
  released: number;
  /** Cost above the reservation (recorded; charged only under the 'charge' over-run policy). */
  overrun: number;
  overruns: number;
}

export interface AccountTotals {
  id: string;
  /** Top-ups. */
  initial: number;
  /** What the journal's entries took from the account (charges, over-run debits, corrections). */
  charged: number;
  /** The ledger's own balance (ledger.account()): initial − charged when the journal adds up. */
  balance: number;
  held: number;
}

export interface DemoReport {
  requests: number;
  seed: number;
  seconds: number;
  /** Per outcome, from the ledger's statements (one entry per settled reservation). */
  outcomes: Record<string, OutcomeTotals>;
  /** Answered 402 by the gateway: no reservation, nothing in the ledger. */
  rejected: number;
  /** Requests the client left mid-stream. */
  clientLeft: number;
  overrunPolicy: OverrunPolicy;
  accounts: AccountTotals[];
}

async function readReport(ledger: Ledger, run: { options: DemoOptions; overrunPolicy: OverrunPolicy; sent: Sent[]; seconds: number }): Promise<DemoReport> {
  const { options, sent } = run;
  const outcomes: Record<string, OutcomeTotals> = {};
  const accounts: AccountTotals[] = [];
  for (const { id } of ACCOUNTS) {
    const lines = await ledger.statement(id);
    for (const line of lines) addToOutcome(outcomes, line);
    const balance = (await ledger.account(id))!;
    const sum = (kinds: Array<StatementLine['kind']>) => lines.filter((l) => kinds.includes(l.kind)).reduce((total, l) => total + l.amount, 0);
    accounts.push({ id, initial: sum(['topup']), charged: -sum(['charge', 'overrun', 'correction']), balance: balance.balance, held: balance.held });
  }
  return {
    requests: options.requests,
    seed: options.seed,
    seconds: run.seconds,
    outcomes,
    rejected: sent.filter((s) => s.status === 402).length,
    clientLeft: sent.filter((s) => s.left).length,
    overrunPolicy: run.overrunPolicy,
    accounts,
  };
}

/** A reservation's figures sit on its 'charge' entry; its over-run on an 'overrun' entry. */
function addToOutcome(outcomes: Record<string, OutcomeTotals>, line: StatementLine): void {
  if (line.kind !== 'charge' && line.kind !== 'overrun') return;
  const totals = (outcomes[line.outcome!] ??= { requests: 0, usageMissing: 0, reserved: 0, charged: 0, released: 0, overrun: 0, overruns: 0 });
  if (line.kind === 'overrun') {
    totals.overrun += line.overrun;
    totals.overruns++;
    return;
  }
  totals.requests++;
  if (line.usage === null) totals.usageMissing++;
  totals.reserved += line.reserved!;
  totals.charged += line.charged!;
  totals.released += line.released!;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  // The first column is text, left-aligned; the others are numbers, right-aligned.
  const format = (row: string[]) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  return [format(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(format)].join('\n');
}

export function formatReport(report: DemoReport): string {
  const credits = microsToCredits;
  const all = Object.values(report.outcomes);
  const total = (field: keyof OutcomeTotals) => all.reduce((sum, totals) => sum + totals[field], 0);
  const outcomeRows = Object.entries(report.outcomes)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([outcome, t]) => [outcome, String(t.requests), String(t.usageMissing), credits(t.reserved), credits(t.charged), credits(t.released), String(t.overruns)]);
  outcomeRows.push(['rejected (402)', String(report.rejected), '-', '-', '-', '-', '-']);
  outcomeRows.push([
    'total',
    String(total('requests') + report.rejected),
    String(total('usageMissing')),
    credits(total('reserved')),
    credits(total('charged')),
    credits(total('released')),
    String(total('overruns')),
  ]);
  const accountRows = report.accounts.map((a) => [a.id, credits(a.initial), credits(a.charged), credits(a.balance), credits(a.held)]);
  return [
    `Tollgate demo: ${report.requests} requests (seed ${report.seed}) through the gateway to a simulated OpenAI upstream,`,
    `finished in ${report.seconds.toFixed(1)} s. Figures in credits, read back from the ledger.`,
    '',
    'Requests by outcome',
    table(['outcome', 'requests', 'no usage', 'reserved', 'charged', 'released', 'over-runs'], outcomeRows),
    '',
    `The client left ${report.clientLeft} streams mid-way. A request with no usage is charged its whole reservation when the`,
    'upstream served it (the client left, the stream was cut, chat without include_usage), nothing after an error status.',
    `Over-runs: ${total('overruns')} requests cost ${credits(total('overrun'))} credits above their reservations, ` +
      (report.overrunPolicy === 'cap' ? 'not charged (over-run policy cap).' : 'charged on top (over-run policy charge).'),
    '',
    'Accounts (balance = initial - charged)',
    table(['account', 'initial', 'charged', 'balance', 'held'], accountRows),
  ].join('\n');
}

// ── The command ──────────────────────────────────────────────────────────────────────────────

export async function runDemo(options: DemoOptions): Promise<number> {
  const started = performance.now();
  const simulator = await startSimulator();
  const accounts = ACCOUNTS.flatMap((a) => ['--account', `${a.id}:${a.key}:${openingCredits(a, options.requests)}`]);
  // An empty environment: the demo never picks up real API keys or a DATABASE_URL.
  const config = parseServeArgs(['--port', '0', '--ledger', 'memory://', '--openai-upstream', simulator.url, ...accounts], {});
  const gateway = await startGatewayServer(config);
  try {
    process.stderr.write(`Sending ${options.requests} requests to the gateway at ${gateway.url} …\n`);
    const sent = await drive(gateway.url, plan(options), options.concurrency);
    await waitUntilSettled(gateway.ledger, 20_000);
    const seconds = (performance.now() - started) / 1000;
    const report = await readReport(gateway.ledger, { options, overrunPolicy: config.overrunPolicy, sent, seconds });
    console.log(options.json ? JSON.stringify(report, null, 2) : formatReport(report));
    return 0;
  } finally {
    await gateway.close();
    await simulator.close();
  }
}
