/**
 * The upstream for the many-concurrent-streams scenario: each response starts at once (headers
 * and the first events), then waits at a barrier until the soak releases it — when every client
 * of the wave is streaming — and only then streams the rest, a write every `delayMs`. So all the
 * streams are open through the gateway at the same time however long the gateway takes to admit
 * them (on a loaded machine, longer than any fixed stream length would allow for).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { SSE_HEADERS } from '../../test/support/provider-streams.js';
import { chunked } from './traffic.js';

export interface BarrierUpstream {
  url: string;
  /** Responses started and waiting at the barrier. */
  waiting(): number;
  /** Lets every waiting and later response run to its end; a new barrier starts with nextWave(). */
  release(): void;
  nextWave(): void;
  close(): Promise<void>;
}

export async function startBarrierUpstream(chunks: number, delayMs: number): Promise<BarrierUpstream> {
  const body = chunked(chunks);
  let waiting = 0;
  let open!: () => void;
  let barrier = new Promise<void>((resolve) => (open = resolve));
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
  const server = http.createServer(async (req, res) => {
    for await (const _ of req) void _;
    res.writeHead(200, SSE_HEADERS);
    res.write(body[0]);
    waiting++;
    await barrier;
    waiting--;
    for (const chunk of body.slice(1)) {
      await sleep(delayMs);
      if (res.destroyed) return;
      res.write(chunk);
    }
    res.end();
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    waiting: () => waiting,
    release: () => open(),
    nextWave: () => {
      barrier = new Promise<void>((resolve) => (open = resolve));
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
