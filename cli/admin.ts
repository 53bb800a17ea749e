/**
 * The ledger's admin commands: accounts, keys and statements. cli/main.ts dispatches here with a
 * way to open the ledger; a command's arguments are checked before the ledger is opened (a typo
 * neither creates an embedded data directory nor connects), then it calls the Ledger and prints.
 *
 * Credits are typed and printed as exact decimals ("12.5"); the ledger counts micro-credits
 * (ledger/money.ts converts, without floating point).
 */
import type { ParseArgsConfig } from 'node:util';
import { LedgerError } from '../ledger/errors.js';
import { parseCommandLine, UsageError } from './args.js';
import { creditsToMicros, microsToCredits } from '../ledger/money.js';
import type { Ledger, StatementLine } from '../ledger/types.js';

/** The first words of argv this module handles. */
export const ADMIN_COMMANDS = ['accounts', 'keys', 'statement'] as const;

export const ADMIN_USAGE = `Usage:
  accounts create ID [--credits N]   open an account (N credits, default 0, up to 6 decimals)
  accounts topup ID --credits N      add N credits
  accounts show ID [--json]          balance, held and available credits
  keys create ID                     create an API key for the account (printed once, on the last line)
  keys revoke KEY                    revoke a key
  statement ID [--format csv|json]   the account's journal, with each reservation's outcome, usage and charge`;

/** Exit codes: 0 done, 1 refused by the ledger (unknown account, …), 2 bad command line. */
const OK = 0;
const REFUSED = 1;
const USAGE = 2;

/** The ledger has nothing to act on (an unknown account, a key that is not active): exit 1. */
class Refusal extends Error {}

type Output = (line: string) => void;

/** Opens the ledger, runs `use` on it and closes it. */
export type WithLedger = (use: (ledger: Ledger) => Promise<void>) => Promise<void>;

/** A command whose arguments have been checked, waiting for the ledger. */
type Action = (ledger: Ledger, out: Output) => Promise<void>;

/**
 * Runs one admin command, e.g. `['accounts', 'topup', 'acme', '--credits', '12.5']`. Results go
 * to `out`, error messages to `err` (default: `out`). Returns the exit code; database failures
 * are thrown.
 */
export async function runAdminCommand(argv: string[], withLedger: WithLedger, out: Output, err: Output = out): Promise<number> {
  try {
    const action = parseCommand(argv);
    await withLedger((ledger) => action(ledger, out));
    return OK;
  } catch (error) {
    // parseArgs reports an unknown or malformed option as a TypeError with an ERR_PARSE_ARGS_* code.
    const badArguments =
      error instanceof UsageError ||
      error instanceof RangeError ||
      String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS') ||
      (error instanceof LedgerError && error.code === 'ERR_LEDGER_INVALID_ARGUMENT');
    if (badArguments) {
      err(`error: ${(error as Error).message}`);
      err(ADMIN_USAGE);
      return USAGE;
    }
    if (error instanceof LedgerError || error instanceof Refusal) {
      err(`error: ${error.message}`);
      return REFUSED;
    }
    throw error;
  }
}

function parseCommand(argv: string[]): Action {
  const [command, subcommand, ...rest] = argv;
  if (command === 'accounts' && subcommand === 'create') return createAccount(rest);
  if (command === 'accounts' && subcommand === 'topup') return topUp(rest);
  if (command === 'accounts' && subcommand === 'show') return showAccount(rest);
  if (command === 'keys' && subcommand === 'create') return createKey(rest);
  if (command === 'keys' && subcommand === 'revoke') return revokeKey(rest);
  if (command === 'statement') return statement(argv.slice(1));
  throw new UsageError(`unknown command: ${argv.join(' ') || '(none)'}`);
}

/** Parses `args` as exactly one positional (`name`) and the given options. */
function parse<Options extends NonNullable<ParseArgsConfig['options']>>(args: string[], name: string, options: Options) {
  const { values, positionals } = parseCommandLine(args, options, true);
  if (positionals.length !== 1) throw new UsageError(`expected one ${name}, got ${positionals.length}`);
  return { value: positionals[0]!, options: values };
}

function createAccount(args: string[]): Action {
  const { value: id, options } = parse(args, 'account ID', { credits: { type: 'string', default: '0' } });
  const micros = creditsToMicros(options.credits, '--credits');
  return async (ledger, out) => {
    await ledger.createAccount(id, micros);
    out(`created account ${id} with ${microsToCredits(micros)} credits`);
  };
}

function topUp(args: string[]): Action {
  const { value: id, options } = parse(args, 'account ID', { credits: { type: 'string' } });
  if (options.credits === undefined) throw new UsageError('--credits is required');
  const micros = creditsToMicros(options.credits, '--credits');
  if (micros === 0) throw new UsageError('--credits must be more than 0');
  return async (ledger, out) => {
    await ledger.topUp(id, micros);
    const account = await ledger.account(id);
    out(`added ${microsToCredits(micros)} credits to ${id}; balance ${microsToCredits(account!.balance)} credits`);
  };
}

function showAccount(args: string[]): Action {
  const { value: id, options } = parse(args, 'account ID', { json: { type: 'boolean', default: false } });
  return async (ledger, out) => {
    const account = await ledger.account(id);
    if (account === null) throw unknownAccount(id);
    const credits = {
      accountId: id,
      balance: microsToCredits(account.balance),
      held: microsToCredits(account.held),
      available: microsToCredits(account.available),
    };
    if (options.json) {
      out(JSON.stringify(credits));
    } else {
      out(`account    ${credits.accountId}`);
      out(`balance    ${credits.balance} credits`);
      out(`held       ${credits.held} credits`);
      out(`available  ${credits.available} credits`);
    }
  };
}

function createKey(args: string[]): Action {
  const { value: id } = parse(args, 'account ID', {});
  return async (ledger, out) => {
    const key = await ledger.createKey(id);
    out(`API key for account ${id} (shown only now; the ledger stores its hash):`);
    // Last line, alone: scripts read it with `tail -n 1`.
    out(key);
  };
}

function revokeKey(args: string[]): Action {
  const { value: key } = parse(args, 'KEY', {});
  return async (ledger, out) => {
    if (!(await ledger.revokeKey(key))) throw new Refusal('no active key matches');
    out('key revoked');
  };
}

const STATEMENT_COLUMNS = [
  'id', 'created_at', 'kind', 'amount', 'overrun', 'reservation_id', 'outcome', 'reserved', 'charged', 'released', 'usage',
] as const;

function statement(args: string[]): Action {
  const { value: id, options } = parse(args, 'account ID', { format: { type: 'string', default: 'csv' } });
  if (options.format !== 'csv' && options.format !== 'json') {
    throw new UsageError(`--format must be csv or json, got ${JSON.stringify(options.format)}`);
  }
  return async (ledger, out) => {
    if ((await ledger.account(id)) === null) throw unknownAccount(id);
    const rows = (await ledger.statement(id)).map(inCredits);
    if (options.format === 'json') {
      for (const line of JSON.stringify(rows, null, 2).split('\n')) out(line);
    } else {
      out(STATEMENT_COLUMNS.join(','));
      for (const row of rows) out(STATEMENT_COLUMNS.map((column) => csvField(row[column])).join(','));
    }
  };
}

/** A statement line for people: amounts in credits (exact decimal strings), snake_case like the CSV header. */
function inCredits(line: StatementLine): Record<(typeof STATEMENT_COLUMNS)[number], string | number | null | object> {
  const credits = (micros: number | null) => (micros === null ? null : microsToCredits(micros));
  return {
    id: line.id,
    created_at: line.createdAt.toISOString(),
    kind: line.kind,
    amount: microsToCredits(line.amount),
    overrun: microsToCredits(line.overrun),
    reservation_id: line.reservationId,
    outcome: line.outcome,
    reserved: credits(line.reserved),
    charged: credits(line.charged),
    released: credits(line.released),
    usage: line.usage,
  };
}

function unknownAccount(id: string): Refusal {
  return new Refusal(`account ${JSON.stringify(id)} does not exist`);
}

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. */
function csvField(value: string | number | null | object): string {
  if (value === null) return '';
  const text = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
