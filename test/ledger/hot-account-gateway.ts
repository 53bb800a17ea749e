/**
 * A gateway process for hot-account.test.ts: opens the PostgreSQL ledger (group commit on, as
 * shipped) and reserves on one account from many loops at once, as a gateway replica under load.
 *
 *   node --import tsx test/ledger/hot-account-gateway.ts '<JSON GatewayConfig>'
 *
 * Protocol, one line each on stdout: `ready` once the ledger is open; then, after the parent
 * writes `go` on stdin, `ok ID AMOUNT` per admitted reserve and `no AMOUNT AVAILABLE` per refusal,
 * written before the next reserve of that loop (stdout to a pipe is synchronous on Linux, so a
 * line written is a line the parent gets, even if this process is killed right after); last,
 * `stats JSON` (ReserveStats). A loop that is refused goes on with smaller amounts only, and ends
 * when it is refused its smallest one.
 */
import { createInterface } from 'node:readline';
import type pg from 'pg';
import { openPostgresLedger } from '../../ledger/index.js';

export interface GatewayConfig {
  pool: pg.PoolConfig;
  account: string;
  /** Reservation ids are PREFIX-N. */
  prefix: string;
  loops: number;
  /** Each reserve picks one at random among those not yet refused in its loop. */
  amounts: number[];
}

const config = JSON.parse(process.argv[2]!) as GatewayConfig;
const ledger = await openPostgresLedger(config.pool);
const say = (line: string) => process.stdout.write(`${line}\n`);
say('ready');
await new Promise<void>((resolve) => {
  const input = createInterface({ input: process.stdin });
  input.on('line', (line) => {
    if (line === 'go') {
      input.close();
      // An open stdin would keep this process alive after its work.
      process.stdin.destroy();
      resolve();
    }
  });
});

let sequence = 0;
await Promise.all(
  Array.from({ length: config.loops }, async () => {
    let amounts = [...config.amounts].sort((a, b) => a - b);
    while (amounts.length > 0) {
      const amount = amounts[Math.floor(Math.random() * amounts.length)]!;
      const reservationId = `${config.prefix}-${++sequence}`;
      const result = await ledger.reserve({
        reservationId,
        accountId: config.account,
        amount,
        ttlSeconds: 3_600,
        provider: 'openai',
        model: 'gpt-hot',
        pricingVersion: 'p1',
      });
      if (result.ok) {
        say(`ok ${reservationId} ${amount}`);
      } else {
        if (result.reason !== 'insufficient_credits') throw new Error(`unexpected refusal: ${result.reason}`);
        say(`no ${amount} ${result.available}`);
        amounts = amounts.filter((a) => a < amount);
      }
    }
  }),
);
say(`stats ${JSON.stringify(ledger.reserveStats())}`);
await ledger.close();
