/**
 * A fake LLM upstream on loopback: replays a response body chunk by chunk (split where the test
 * says, with delays), records what it received, and can break the connection mid-stream.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface Reply {
  status?: number;
  headers?: Record<string, string>;
  /** The body, already split into the writes the upstream makes. */
  chunks: Buffer[];
  /** Milliseconds between writes. */
  delayMs?: number;
  /** Close the connection after this many writes instead of ending the response (a reset mid-stream). */
  resetAfterChunks?: number;
  /** Go silent after this many writes (0: before the headers), until the peer gives up. */
  stallAfterChunks?: number;
}

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  remotePort: number;
}

export interface Upstream {
  url: string;
  received: ReceivedRequest[];
  /** Sets how the next requests are answered. */
  reply(reply: Reply | ((request: ReceivedRequest) => Reply)): void;
  /** Bytes the upstream has written so far (handed to the kernel). */
  bytesWritten(): number;
  /** Resolves when a response the upstream was writing got closed before it ended. */
  nextAbort(): Promise<void>;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Ends the TCP connection in the middle of the HTTP response: what was written still arrives
 * (destroy() would discard writes not yet flushed), then the peer sees the response cut short.
 */
function breakConnection(socket: Socket): void {
  socket.end();
}

export async function startUpstream(): Promise<Upstream> {
  let replier: (request: ReceivedRequest) => Reply = () => ({ status: 500, chunks: [Buffer.from('no reply set')] });
  const received: ReceivedRequest[] = [];
  let written = 0;
  let abortWaiters: Array<() => void> = [];

  const server = http.createServer(async (req, res) => {
    const parts: Buffer[] = [];
    for await (const part of req) parts.push(part as Buffer);
    const request: ReceivedRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      body: Buffer.concat(parts),
      remotePort: req.socket.remotePort ?? 0,
    };
    received.push(request);
    const reply = replier(request);
    let ended = false;
    res.on('close', () => {
      if (ended) return;
      const waiters = abortWaiters;
      abortWaiters = [];
      for (const wake of waiters) wake();
    });
    if (reply.stallAfterChunks === 0) return;
    res.writeHead(reply.status ?? 200, reply.headers ?? {});
    res.flushHeaders();
    for (const [index, chunk] of reply.chunks.entries()) {
      if (res.destroyed || reply.stallAfterChunks === index) return;
      if (reply.resetAfterChunks === index) {
        breakConnection(req.socket);
        return;
      }
      if (reply.delayMs) await sleep(reply.delayMs);
      written += chunk.length;
      if (!res.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          res.on('drain', done);
          res.on('close', done);
        });
      }
    }
    if (reply.resetAfterChunks !== undefined) {
      breakConnection(req.socket);
      return;
    }
    ended = true;
    res.end();
  });
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    reply: (reply) => {
      replier = typeof reply === 'function' ? reply : () => reply;
    },
    bytesWritten: () => written,
    nextAbort: () => new Promise<void>((resolve) => abortWaiters.push(resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
