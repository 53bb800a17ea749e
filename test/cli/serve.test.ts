/**
 * The standalone server's own plumbing: where billing spans go, what happens when they cannot be
 * delivered, and /metrics on a listener of its own.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from '../../cli/args.js';
import { parseServeArgs, startGatewayServer } from '../../cli/serve.js';
import { tracesUrl } from '../../cli/tracing.js';
import { openLedger } from '../../ledger/index.js';
import { post } from '../support/http.js';
import { cliMain } from '../support/processes.js';
import { writeTestPricingFile } from '../support/pricing.js';
import { responsesStream, SSE_HEADERS } from '../support/provider-streams.js';
import { startUpstream } from '../support/upstream.js';

describe('tollgate serve', function () {
  it('answers --help on every command; an unknown option or a missing value is exit code 2 with a message, not a stack trace', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', cliMain, ...args], { encoding: 'utf8' });
    for (const command of ['serve', 'settle', 'demo']) {
      const help = run(command, '--help');
      expect(help.status, command).to.equal(0);
      expect(help.stdout).to.match(/^Usage: tollgate <command>/);
    }
    const unknown = run('serve', '--bogus');
    expect(unknown.status).to.equal(2);
    expect(unknown.stderr).to.equal("tollgate: Unknown option '--bogus' (tollgate --help lists the options)\n");
    // parseArgs would keep the last one silently.
    const repeated = run('serve', '--port', '8080', '--port', '9090');
    expect(repeated.status).to.equal(2);
    expect(repeated.stderr).to.equal('tollgate: --port is given more than once (tollgate --help lists the options)\n');
    // The admin commands take --ledger before their own options: twice is the same refusal.
    const ledgers = run('accounts', 'show', 'acme', '--ledger', join(tmpdir(), 'tollgate-no-a'), '--ledger=' + join(tmpdir(), 'tollgate-no-b'));
    expect(ledgers.status).to.equal(2);
    expect(ledgers.stderr).to.equal('tollgate: --ledger is given more than once (tollgate --help lists the options)\n');
    const missing = run('settle', '--port');
    expect(missing.status).to.equal(2);
    expect(missing.stderr).to.match(/^tollgate: Option '--port <value>' argument missing/).and.not.match(/\bat /);
  });

  it('a start that fails exits with one line and has written nothing: it seeds accounts last', async function () {
    // Eight CLI processes, each compiling the TypeScript sources with tsx as it starts.
    this.timeout(90_000);
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', cliMain, ...args], { encoding: 'utf8', timeout: 30_000 });
    const taken = http.createServer();
    const port = await new Promise<number>((resolve) => taken.listen(0, '127.0.0.1', () => resolve((taken.address() as AddressInfo).port)));
    const root = await mkdtemp(join(tmpdir(), 'tollgate-serve-'));
    try {
      // It used to seed, then fail to listen, and stay up with settlement running.
      const inUse = run('serve', '--ledger', root, '--port', String(port), '--account', 'seeded:tg-seeded-key:10');
      expect(inUse.status).to.equal(1);
      expect(inUse.stderr).to.equal(`tollgate: listen EADDRINUSE: address already in use 127.0.0.1:${port}\n`);
      const ledger = await openLedger(root);
      expect(await ledger.account('seeded')).to.equal(null);
      await ledger.close();
      // The admin commands: --ledger=DIR works too; their errors go to stderr.
      const show = run('accounts', 'show', 'seeded', `--ledger=${root}`);
      expect([show.status, show.stdout, show.stderr]).to.deep.equal([1, '', 'error: account "seeded" does not exist\n']);
      // A seed whose key is another account's: refused before any seed is written.
      const taker = await openLedger(root);
      await taker.createAccount('owner', 0);
      await taker.addKey('owner', 'tg-owned-key');
      await taker.close();
      const stolen = run('serve', '--ledger', root, '--port', '0', '--account', 'fresh:tg-fresh-key:5', '--account', 'thief:tg-owned-key:5');
      expect([stolen.status, stolen.stderr]).to.deep.equal([2, 'tollgate: --account thief: its key belongs to another account (tollgate --help lists the options)\n']);
      const after = await openLedger(root);
      expect([await after.account('fresh'), await after.account('thief')]).to.deep.equal([null, null]);
      await after.close();
      for (const [args, message] of [
        [['--port', '70000'], '--port must be a port from 0 to 65535, got "70000"'],
        [['--sweep-interval', '0'], '--sweep-interval must be at least 1, got "0"'],
        [['--openai-upstream', 'ftp://x'], '--openai-upstream must be an http(s) URL, got "ftp://x"'],
        // The middleware's rule: the password is not repeated.
        [['--openai-upstream', 'https://user:secret@api.example'], '--openai-upstream must be an http(s) URL without credentials (use the API key options), got "https://…@api.example/"'],
        [['--account', 'a:k1:-5'], '--account "a:k1:-5": credits must not be negative, got "-5"'],
        [['--account', 'a:tg-k:1', '--account', 'b:tg-k:2'], '--account: key "tg-k" is given twice'],
      ] as const) {
        const refused = run('serve', '--ledger', 'memory://', ...args);
        expect(refused.status, args.join(' ')).to.equal(2);
        expect(refused.stderr).to.equal(`tollgate: ${message} (tollgate --help lists the options)\n`);
      }
    } finally {
      taken.close();
      await rm(root, { recursive: true, force: true });
    }
  });

  it('takes --otlp-endpoint as a base URL or as the full traces URL', () => {
    expect(tracesUrl('http://collector:4318')).to.equal('http://collector:4318/v1/traces');
    expect(tracesUrl('http://collector:4318/')).to.equal('http://collector:4318/v1/traces');
    expect(tracesUrl('http://collector:4318/v1/traces')).to.equal('http://collector:4318/v1/traces');
    expect(tracesUrl('https://example.test/custom/path')).to.equal('https://example.test/custom/path');
    // Refused before anything starts: the first parsed as a URL of scheme `collector:` (the server
    // started and dropped every billing span), the second ended in a stack trace.
    for (const endpoint of ['collector:4318', '127.0.0.1:4318']) {
      expect(() => parseServeArgs(['--otlp-endpoint', endpoint], {})).to.throw(UsageError, `--otlp-endpoint must be an http(s) URL, got "${endpoint}"`);
    }
  });

  it('counts and logs billing spans it could not deliver; serves /metrics on --metrics-port', async () => {
    // A span endpoint that refuses everything permanently (400: the exporter does not retry).
    const paths: string[] = [];
    const refusing = http.createServer((req, res) => {
      paths.push(req.url ?? '');
      req.resume();
      res.writeHead(400).end();
    });
    await new Promise<void>((resolve) => refusing.listen(0, '127.0.0.1', resolve));
    const endpoint = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}`;
    const upstream = await startUpstream();
    upstream.reply({ headers: SSE_HEADERS, chunks: [responsesStream('lost span', { input: 1, output: 1 })] });
    const warnings: string[] = [];
    const warn = console.warn;
    console.warn = (message: string) => warnings.push(message);
    const gateway = await startGatewayServer({
      ...parseServeArgs(['--port', '0', '--ledger', 'memory://', '--otlp-endpoint', endpoint, '--metrics-port', '0', '--pricing', writeTestPricingFile()], {}),
      openaiUpstream: upstream.url,
      accounts: [{ id: 'acct', key: 'tg-serve-test', amount: 10_000_000 }],
    });
    try {
      const res = await post(`${gateway.url}/v1/responses`, JSON.stringify({ model: 'gpt-4.1', stream: true }), { authorization: 'Bearer tg-serve-test' });
      expect(res.status).to.equal(200);
      expect(gateway.metricsUrl).not.to.equal(`${gateway.url}/metrics`);
      const onGateway = await fetch(`${gateway.url}/metrics`);
      expect(onGateway.status).to.equal(404);
      let text = '';
      for (let i = 0; i < 50 && !/tollgate_billing_spans_dropped_total 1/.test(text); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        text = await (await fetch(gateway.metricsUrl)).text();
      }
      expect(text).to.match(/^tollgate_billing_spans_dropped_total 1$/m);
      expect(paths).to.deep.equal(['/v1/traces']);
      expect(warnings.join('\n')).to.match(/1 billing spans could not be exported/);
    } finally {
      console.warn = warn;
      await gateway.close();
      await upstream.close();
      refusing.close();
    }
  });
});
