/**
 * Group commit: work submitted while a statement (or transaction) is in flight waits, and then
 * goes to the database together with everything else that waited, as ONE statement. Used for the
 * gateway's reserves, key lookup included (sql-ledger.ts), and for settlement transactions
 * (collector/group-commit.ts).
 *
 * Why: on this hot path the cost of a statement is mostly per statement, not per row — a round
 * trip, parsing and planning, a commit (a WAL flush on PostgreSQL), and a row lock held through
 * it. One statement for 30 reserves costs little more than one for a single reserve, so under
 * load the per-request cost falls with the load, and it is the same for one hot account (whose
 * reserves would otherwise queue on its row lock) as for traffic spread over many accounts.
 *
 * A group closes one turn of the event loop after its first submission (setImmediate): it holds
 * whatever was submitted meanwhile — requests whose bytes arrived in the same turn, callers just
 * answered that submit again at once, and everything that queued while the statement before it
 * ran — oldest first, at most `maxGroup` items (a single larger submission still goes whole).
 * Nothing waits for a group to fill, and at low load the wait is one turn, a few microseconds.
 * The turn matters for PGlite, which runs statements on this thread: without it nothing could
 * ever arrive while a statement is "in flight", and every request would go alone.
 *
 * `maxInFlight`: statements in flight at once. 1 keeps groups in submission order (a reserve
 * group is admitted in arrival order, each request against what the ones before it left); 2 lets
 * the next group be prepared and sent while one commits (settlement, whose transactions lock in a
 * fixed order and do not depend on each other's order).
 *
 * All or nothing per run: when `run` throws, every submission in it is rejected with the error
 * (callers that need per-item failures answer them as values).
 *
 * Hot accounts (one customer sends most of the traffic): every reserve updates that account's
 * row, and PostgreSQL serialises the updates on the row lock, each holding it through its commit —
 * about 1,100–2,300 reserves/s on one account for the whole fleet, p99 near 100 ms at 64 in
 * flight (bench/hot-account.ts, plain path). Why group commit, and not per-replica credit leases
 * (a replica takes a block of an account's credits in one statement and admits from memory):
 * - Group commit takes the row lock once per group, so the ceiling rises with the group size,
 *   which follows the load: 40,685 reserves/s at 64 in flight from two processes (18.6× the plain
 *   path in the same run, p99 4.1 ms), 53,472 at 128 (23.5×).
 * - Leases could skip the account row, but a reservation must still be a durable row before the
 *   gateway forwards the request: settlement, the sweeper and statements work per reservation id,
 *   and an admitted request whose row a crash lost could never be charged. The bench's "rows
 *   only" line is that floor — group commit of reservation rows with no account row at all — and
 *   it is 2.0–2.3× group commit. Leases would buy at most that, and add a lease table, renewal,
 *   reclaiming, settlement against leases, and credits stranded in other replicas' leases (false
 *   refusals to count and bound; a crashed replica's lease lost until its TTL).
 * - With group commit nothing else changes: a reserve resolves only after its own row and its hold
 *   are committed; a gateway killed with SIGKILL leaves reservations that are durable or were
 *   never admitted (its statement in flight commits whole or rolls back with its connection). No
 *   overspend: admission is decided under the row lock against balance - held, and `held` rises
 *   in the same statement. No false refusals: every refusal is decided under the row lock, where
 *   nothing but open reservations holds credits (test/ledger/hot-account.test.ts).
 */
export interface GroupCommitOptions {
  maxGroup: number;
  maxInFlight: number;
}

/** Submits items; resolves with one result per item, in the order given. */
export type Submit<T, R> = (items: T[]) => Promise<R[]>;

interface Waiting<T, R> {
  items: T[];
  resolve(results: R[]): void;
  reject(error: unknown): void;
}

/**
 * `run` gets the items of every submission in the group, in submission order, and answers one
 * result per item in the same order.
 */
export function groupCommit<T, R>(run: (items: T[]) => Promise<R[]>, { maxGroup, maxInFlight }: GroupCommitOptions): Submit<T, R> {
  const waiting: Array<Waiting<T, R>> = [];
  let inFlight = 0;

  function takeGroup(): Array<Waiting<T, R>> {
    let size = waiting[0]!.items.length;
    let count = 1;
    while (count < waiting.length && size + waiting[count]!.items.length <= maxGroup) {
      size += waiting[count]!.items.length;
      count++;
    }
    return waiting.splice(0, count);
  }

  let scheduled = false;

  function schedule(): void {
    if (scheduled || inFlight >= maxInFlight || waiting.length === 0) return;
    scheduled = true;
    setImmediate(pump);
  }

  function pump(): void {
    scheduled = false;
    while (inFlight < maxInFlight && waiting.length > 0) {
      const group = takeGroup();
      inFlight++;
      const items = group.flatMap((w) => w.items);
      // A run that throws at once fails its group like one that rejects, never this process.
      new Promise<R[]>((resolve) => resolve(run(items)))
        .then(
          (results) => {
            // One result per item, in item order: hand each submission its slice.
            let offset = 0;
            for (const w of group) {
              w.resolve(results.slice(offset, offset + w.items.length));
              offset += w.items.length;
            }
          },
          (error: unknown) => {
            for (const w of group) w.reject(error);
          },
        )
        .finally(() => {
          inFlight--;
          schedule();
        });
    }
  }

  return (items) =>
    new Promise((resolve, reject) => {
      waiting.push({ items, resolve, reject });
      schedule();
    });
}
