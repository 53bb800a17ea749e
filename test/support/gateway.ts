/**
 * A gateway for tests: an Express app (4 or 5) with tollgate() mounted, a real embedded ledger,
 * billing spans in an in-memory exporter and the metrics on a registry of its own.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import express5 from 'express';
import express4 from 'express4';
import { Registry } from 'prom-client';
import { openLedger } from '../../ledger/index.js';
import type { Ledger } from '../../ledger/types.js';
import { tollgate, type OutcomeRecord, type TollgateOptions } from '../../plugin/index.js';

export type ExpressMajor = 4 | 5;
export const EXPRESS_MAJORS: ExpressMajor[] = [4, 5];

export interface TestGateway {
  url: string;
  ledger: Ledger;
  spans: InMemorySpanExporter;
  registry: Registry;
  outcomes: OutcomeRecord[];
  /** Resolves once `count` requests have reached their outcome. */
  waitForOutcomes(count: number, timeoutMs?: number): Promise<OutcomeRecord[]>;
  /** The middleware's graceful drain (see TollgateMiddleware.drain). */
  drain(deadlineMs: number): Promise<void>;
  /** Creates an account holding `credits` micro-credits and returns a key for it. */
  account(id: string, micro: number): Promise<string>;
  close(): Promise<void>;
}

export async function startGateway(
  upstreamUrl: string,
  major: ExpressMajor = 5,
  options: Partial<TollgateOptions> = {},
): Promise<TestGateway> {
  const ledger = options.ledger ?? (await openLedger('memory://'));
  const spans = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] });
  const registry = new Registry();
  const outcomes: OutcomeRecord[] = [];
  let wake = () => {};
  const middleware = tollgate({
    ledger,
    openaiUpstream: upstreamUrl,
    anthropicUpstream: upstreamUrl,
    openaiApiKey: 'sk-upstream-openai',
    anthropicApiKey: 'sk-upstream-anthropic',
    tracerProvider: provider,
    registry,
    logger: () => {},
    ...options,
    onOutcome: (record) => {
      outcomes.push(record);
      options.onOutcome?.(record);
      wake();
    },
  });
  const app = major === 4 ? express4() : express5();
  app.disable('x-powered-by');
  app.use(middleware);
  const server: Server = await new Promise((resolve) => {
    const listening = app.listen(0, '127.0.0.1', () => resolve(listening));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    ledger,
    spans,
    registry,
    outcomes,
    waitForOutcomes: async (count, timeoutMs = 5000) => {
      const deadline = Date.now() + timeoutMs;
      while (outcomes.length < count) {
        if (Date.now() > deadline) throw new Error(`expected ${count} outcomes, got ${outcomes.length}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 50);
        });
      }
      return outcomes;
    },
    drain: (deadlineMs) => middleware.drain(deadlineMs),
    account: async (id, micro) => {
      await ledger.createAccount(id, micro);
      return ledger.createKey(id);
    },
    close: async () => {
      middleware.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await provider.shutdown();
      if (options.ledger === undefined) await ledger.close();
    },
  };
}
