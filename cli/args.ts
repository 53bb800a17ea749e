/** The command-line parsing that every tollgate command shares. */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** The command line is wrong: the command prints the message (and its usage) and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

type Options = NonNullable<ParseArgsConfig['options']>;
type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O; allowPositionals: boolean; strict: true; tokens: true }>>;

/**
 * node:util parseArgs, strict, that also refuses a single-valued option given twice: parseArgs
 * keeps the last one silently, and `accounts topup acme --credits 5 --credits 50` must not
 * quietly add 50.
 */
export function parseCommandLine<O extends Options>(args: string[], options: O, allowPositionals = false): Pick<Parsed<O>, 'values' | 'positionals'> {
  const { values, positionals, tokens } = parseArgs({ args, options, allowPositionals, strict: true, tokens: true });
  const seen = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option' || options[token.name]?.multiple) continue;
    if (seen.has(token.name)) throw new UsageError(`--${token.name} is given more than once`);
    seen.add(token.name);
  }
  return { values, positionals };
}
