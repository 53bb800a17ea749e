/**
 * A logger that says something at most once per interval: a condition that holds for every
 * request (the ledger down, the span exporter failing) must not flood the log.
 */
export function throttledLogger(logger: (message: string) => void, intervalMs: number): (message: string) => void {
  let last = -Infinity;
  return (message) => {
    const now = performance.now();
    if (now - last < intervalMs) return;
    last = now;
    logger(message);
  };
}
