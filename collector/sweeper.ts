/**
 * Every reservation ends (DESIGN.md): one whose span never arrives before its TTL is settled at
 * the reserved amount by this sweeper, and a span that arrives later corrects it (the ledger's
 * 'corrected' result). Each sweep also refreshes tollgate_open_reservations.
 *
 * Several settlement replicas may each run a sweeper: expireStale is a ledger transaction, so
 * two sweeps never expire the same reservation twice.
 */
import { settlementMetrics } from './metrics.js';
import { parseSweeperOptions, type SweeperOptions } from './options.js';

export interface Sweeper {
  /** Runs one sweep now (also what the timer runs); resolves to the number of reservations expired. */
  sweep(): Promise<number>;
  /** Stops the timer and waits for a sweep in progress to finish. */
  stop(): Promise<void>;
}

export function startSweeper(options: SweeperOptions): Sweeper {
  const { ledger, intervalMs, batchLimit, now, registry, onError } = parseSweeperOptions(options);
  const metrics = settlementMetrics(registry);
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<number> | undefined;

  async function sweepOnce(): Promise<number> {
    let expired = 0;
    // A full batch may leave more behind: repeat, one transaction per batch, until drained.
    for (;;) {
      const count = await ledger.expireStale(now(), batchLimit);
      expired += count;
      metrics.count('expired', count);
      if (count < batchLimit || stopped) break;
    }
    metrics.setOpenReservations(await ledger.openReservations());
    return expired;
  }

  function sweep(): Promise<number> {
    // One sweep at a time: a manual sweep during a timed one waits for it and runs after.
    const next = (running ?? Promise.resolve(0)).catch(() => 0).then(sweepOnce);
    running = next;
    return next;
  }

  function schedule(): void {
    if (stopped) return;
    // setTimeout after each sweep rather than setInterval: a slow ledger never stacks sweeps.
    timer = setTimeout(() => {
      sweep()
        .catch(onError)
        .finally(schedule);
    }, intervalMs);
    timer.unref(); // a sweeper alone does not keep the process alive
  }

  schedule();
  return {
    sweep,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running?.catch(() => undefined);
    },
  };
}
