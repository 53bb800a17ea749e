/**
 * The requests a gateway has in flight, for drain(): an array of slots, cleared on release.
 *
 * Not a Set. V8 keeps a Set's entries in a hash table that it replaces whenever the table grows,
 * shrinks or fills up with deleted entries, and it links each replaced table to its successor (so
 * that live iterators can follow) without clearing it. Once a full collection has moved the
 * current table to the old generation, that dead table keeps its successors, and every request
 * added to them, reachable for the young generation's collections until the next full one: each
 * request's whole state (request, response, span, buffers) was then copied to the old
 * generation, from the first full collection under load for as long as the process ran.
 * Measured in the gateway (bench/proxy.ts's stream and load, PostgreSQL ledger, --trace-gc-nvp,
 * 5 s loads): with the Set, after the first full collection under load (8 to 41 s into a run),
 * 1.5 MB promoted per scavenge and 313-333 µs of CPU per request, against 264-293 before it;
 * with the slots, 4-23 KB and 265-284 µs all along.
 *
 * A released slot is reused, and the array is only replaced when more requests than ever before
 * are in flight at once.
 */
export interface Tracked {
  /** Settles when the request reached its outcome; must never reject. */
  done: Promise<unknown>;
}

export class InFlightRequests<T extends Tracked> {
  private readonly slots: Array<T | undefined> = [];
  private readonly freeSlots: number[] = [];

  /** Holds `entry` until its `done` settles. */
  track(entry: T): void {
    const slot = this.freeSlots.pop() ?? this.slots.length;
    this.slots[slot] = entry;
    void entry.done.finally(() => {
      this.slots[slot] = undefined;
      this.freeSlots.push(slot);
    });
  }

  get size(): number {
    return this.slots.length - this.freeSlots.length;
  }

  /** The entries held now. */
  entries(): T[] {
    return this.slots.filter((entry): entry is T => entry !== undefined);
  }
}
