/**
 * Group commit for reserve: while a statement for an account is in flight, later reserves of the
 * same account in this process wait, and then go to the database together, as ONE statement that
 * takes the account's row lock once (sql.RESERVE_BATCH). SqlLedger uses it on both ledgers.
 *
 * The problem (one customer sends most of the traffic): every reserve updates that account's
 * row, and PostgreSQL serialises the updates on the row lock, each holding it through its commit:
 * about 1,000–2,000 reserves/s on one account for the whole fleet, p99 150–230 ms at 64 in
 * flight, and 700–900 µs of CPU per reserve, most of it PostgreSQL's lock waits
 * (bench/hot-account.ts; PostgreSQL 15, synchronous commit, 2 busy cores).
 *
 * Why group commit, and not per-replica credit leases (a replica takes a block of an account's
 * credits in one statement and admits from memory) — measured with bench/hot-account.ts, two
 * gateway processes on one account:
 * - Group commit: 14,000–34,000 reserves/s at 64 in flight (12–23× the plain path in the same
 *   run), 24,000–64,000 at 128 (24–36×), at 25–40 µs of CPU per reserve (gateway + PostgreSQL).
 *   The row lock is taken once per group (a 64-row group runs in about 1 ms), so the ceiling
 *   rises with the group size, which follows the load: what one process has in flight on that
 *   account. Nothing waits to fill a group: a group is whatever queued while the last ran.
 * - Leases could skip the account row, but a reservation must still be a durable row before the
 *   gateway forwards the request: settlement, the sweeper and statements work per reservation id,
 *   and an admitted request whose row a crash lost could never be charged. The bench's "rows
 *   only" line is that floor — group commit of reservation rows with no account row at all — and
 *   it is 1.3–1.9× group commit. Leases would buy at most that, and add a lease table, renewal,
 *   reclaiming, settlement against leases, and credits stranded in other replicas' leases (false
 *   refusals to count and bound; a crashed replica's lease lost until its TTL).
 * - With group commit nothing else changes: a reserve resolves only after its own row and its hold
 *   are committed. A gateway killed with SIGKILL leaves reservations that are durable (ended as
 *   ever, by span or sweeper) or were never admitted: its statement in flight commits whole or
 *   rolls back with its connection. No overspend, for the reason as before: admission is decided
 *   under the row lock against balance - held, and `held` rises in the same statement.
 * - No false refusals: every refusal is decided under the account's row lock, where nothing but
 *   open reservations holds credits, and says what was left then. An account with credits for
 *   exactly K requests admits exactly K across the fleet (test/ledger/hot-account.test.ts).
 *
 * Order: a group is admitted in arrival order, each request against what the ones before it left
 * (sql.RESERVE_BATCH), as if each had run alone in that order. A reserve for an account with
 * nothing in flight — the usual case when traffic spreads over many accounts — runs the plain
 * single-request statement at once: no wait, under 1 µs of CPU for the bookkeeping.
 *
 * PGlite is one connection, so it needs none of this to be correct; it still gains (measured:
 * 1,000–1,800 → 14,000–20,000 reserves/s on one account at 64 in flight), and both ledgers then
 * run, and are tested on, the same path.
 */

/** What one item of a group came to: a value, or the error that item alone failed with. */
export type Settled<R> = PromiseSettledResult<R>;

/**
 * How to run items of one key: `one` alone (a key with nothing in flight), `group` several that
 * waited together, answering one Settled per item in order (throwing fails them all).
 */
export interface Runner<T, R> {
  one(key: string, item: T): Promise<R>;
  group(key: string, items: T[]): Promise<Array<Settled<R>>>;
}

interface Waiting<T, R> {
  item: T;
  resolve(value: R): void;
  reject(reason: unknown): void;
}

/**
 * Coalesces items per key: one run in flight per key at a time, each after the first carrying
 * everything that arrived for that key meanwhile (at most `maxGroup`, oldest first). Keys do not
 * wait for each other.
 */
export class KeyedGroupCommit<T, R> {
  /** Keys with a run in flight, each with the items waiting for the next run. */
  private readonly waiting = new Map<string, Array<Waiting<T, R>>>();

  constructor(
    private readonly maxGroup: number,
    private readonly runner: Runner<T, R>,
  ) {}

  submit(key: string, item: T): Promise<R> {
    const queue = this.waiting.get(key);
    if (queue !== undefined) return new Promise<R>((resolve, reject) => queue.push({ item, resolve, reject }));
    // Nothing in flight for this key, the usual case when traffic spreads over many keys: run at
    // once, with no wrapping beyond noting when the key is free again.
    this.waiting.set(key, []);
    const result = this.runner.one(key, item);
    const next = () => this.next(key, false);
    result.then(next, next);
    return result;
  }

  /** Keys with a run in flight. */
  get busyKeys(): number {
    return this.waiting.size;
  }

  /**
   * After a run for `key`: runs what waited, or frees the key. `hot`: the run was a group, so the
   * key is contended — callers just answered usually submit again at once.
   */
  private next(key: string, hot: boolean): void {
    const queue = this.waiting.get(key)!;
    if (queue.length === 0 && !hot) {
      this.waiting.delete(key);
      return;
    }
    // One turn of the event loop before the next group closes: callers just answered that submit
    // again at once, and requests whose bytes arrived meanwhile, join it instead of going alone
    // (then everyone else would wait for that one's statement).
    setImmediate(() => {
      if (queue.length === 0) this.waiting.delete(key);
      else void this.runGroup(key, queue.splice(0, this.maxGroup));
    });
  }

  private async runGroup(key: string, group: Array<Waiting<T, R>>): Promise<void> {
    let settled: Array<Settled<R>> | undefined;
    let failure: unknown;
    try {
      settled = await this.runner.group(
        key,
        group.map((entry) => entry.item),
      );
    } catch (error) {
      failure = error;
    }
    group.forEach((entry, i) => {
      const outcome = settled?.[i];
      if (outcome === undefined) entry.reject(failure ?? new Error('group commit: no result for an item'));
      else if (outcome.status === 'fulfilled') entry.resolve(outcome.value);
      else entry.reject(outcome.reason);
    });
    this.next(key, true);
  }
}
