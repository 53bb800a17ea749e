/**
 * Group commit for settlement: OTLP requests that arrive while settlement transactions are running
 * wait, and then go to the ledger together, in ONE `ledger.settle()` call (ledger/group-commit.ts).
 *
 * Why: every settlement transaction locks the accounts it touches (ledger/settlement.ts), and
 * spans of concurrent requests mostly touch the same accounts, so one transaction per request
 * would have them queue on those locks — while holding other locks across round trips that this
 * single-threaded process may be slow to make (it is busy decoding the next request). Grouping
 * does the same work in fewer, larger transactions with fewer commits.
 *
 * Two groups may be in flight: while one commits, the next is already prepared and sent (and
 * waits for the first one's account locks in the database, not for this process), so the
 * database is never idle while this process works. The ledger takes its locks in a fixed order,
 * so two transactions cannot deadlock. Several settlement replicas settle in parallel likewise.
 *
 * All-or-nothing per group: when the transaction fails, every request in it is told so (the
 * sender retries; settlement is idempotent).
 */
import { groupCommit as group, type Submit } from '../ledger/group-commit.js';
import type { Ledger, OverrunPolicy, SettlementOutcome, SettlementRequest } from '../ledger/types.js';

export type Settle = Submit<SettlementRequest, SettlementOutcome>;

/** Transactions in flight at once: one committing, one prepared behind it. */
const MAX_IN_FLIGHT = 2;

/**
 * `maxGroup`: a group is closed once it holds this many settlement requests (a single larger
 * submission still goes whole), which bounds a transaction's size and lock time.
 */
export function groupCommit(ledger: Ledger, policy: OverrunPolicy, maxGroup: number): Settle {
  return group((requests) => ledger.settle(requests, policy), { maxGroup, maxInFlight: MAX_IN_FLIGHT });
}
