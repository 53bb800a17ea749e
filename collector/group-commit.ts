/**
 * Group commit: OTLP requests that arrive while a settlement transaction is running wait, and
 * then go to the ledger together, in ONE `ledger.settle()` call.
 *
 * Why: every settlement transaction locks the accounts it touches (ledger/settlement.ts), and
 * spans of concurrent requests mostly touch the same accounts, so concurrent transactions would
 * queue on those locks anyway — while holding locks across round trips that this single-threaded
 * process may be slow to make (it is busy decoding the next request). One transaction at a time,
 * each carrying everything that arrived meanwhile, does the same work with no lock waits, fewer
 * commits, and decoding overlapped with the database's work. Several settlement replicas still
 * settle in parallel, each with its own group.
 *
 * All-or-nothing per group: when the transaction fails, every request in it is told so (the
 * sender retries; settlement is idempotent).
 */
import type { Ledger, OverrunPolicy, SettlementOutcome, SettlementRequest } from '../ledger/types.js';

export type Settle = (requests: SettlementRequest[]) => Promise<SettlementOutcome[]>;

interface Waiting {
  requests: SettlementRequest[];
  resolve(outcomes: SettlementOutcome[]): void;
  reject(error: unknown): void;
}

/**
 * `maxGroup`: a group is closed once it holds this many settlement requests (a single larger
 * submission still goes whole), which bounds a transaction's size and lock time.
 */
export function groupCommit(ledger: Ledger, policy: OverrunPolicy, maxGroup: number): Settle {
  const waiting: Waiting[] = [];
  let running = false;

  async function run(): Promise<void> {
    running = true;
    while (waiting.length > 0) {
      let size = 0;
      let count = 0;
      while (count < waiting.length && (count === 0 || size + waiting[count]!.requests.length <= maxGroup)) {
        size += waiting[count]!.requests.length;
        count++;
      }
      const group = waiting.splice(0, count);
      try {
        // The ledger answers one outcome per request, in request order: hand each its slice.
        const outcomes = await ledger.settle(
          group.flatMap((w) => w.requests),
          policy,
        );
        let offset = 0;
        for (const w of group) {
          w.resolve(outcomes.slice(offset, offset + w.requests.length));
          offset += w.requests.length;
        }
      } catch (error) {
        for (const w of group) w.reject(error);
      }
    }
    running = false;
  }

  return (requests) =>
    new Promise((resolve, reject) => {
      waiting.push({ requests, resolve, reject });
      if (!running) void run();
    });
}
