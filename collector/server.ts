/**
 * The settlement endpoint: OTLP/HTTP `POST /v1/traces` and Prometheus `GET /metrics`.
 *
 * Answers follow the OTLP/HTTP spec and what the Collector's otlp_http exporter does with them
 * (../shared/COLLECTOR-NOTES.md): it retries only 429/502/503/504 and drops data on any other
 * error, and treats a 2xx whose body does not parse as an ExportTraceServiceResponse as a
 * permanent error. So:
 * - 200 + ExportTraceServiceResponse (in the request's encoding) once the spans are committed,
 *   with partial_success counting the spans that will never settle from this delivery;
 * - 400 for a body that cannot be decoded (retrying cannot help), never a 5xx;
 * - 503 + Retry-After when the ledger fails: nothing was committed, and settlement is
 *   idempotent, so the retry is safe;
 * - 401 / 413 / 415 for a sender, size or format problem. Error bodies are google.rpc.Status.
 *
 * GET /metrics is not authenticated, like most scrape targets: it carries totals, no account.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import { gunzip } from 'node:zlib';
import { groupCommit } from './group-commit.js';
import { settlementMetrics } from './metrics.js';
import { parseServerOptions, type SettlementServerOptions } from './options.js';
import { CONTENT_TYPES, decodeExportRequest, encodeExportResponse, encodeStatus, encodingOf, type OtlpEncoding } from './otlp.js';
import { SETTLEMENT_ATTRIBUTES } from './records.js';
import { settleSpans } from './settle.js';

const TRACES_PATH = '/v1/traces';
const METRICS_PATH = '/metrics';

const gunzipAsync = promisify(gunzip);

/** The request listener, to mount on a server of your own. */
export function createSettlementHandler(options: SettlementServerOptions): RequestListener {
  const resolved = parseServerOptions(options);
  const { registry, maxBodyBytes, retryAfterSeconds, onError } = resolved;
  const context = {
    settle: groupCommit(resolved.ledger, resolved.overrunPolicy, resolved.maxBatchSpans),
    catalogue: resolved.catalogue,
    signingKeys: resolved.signingKeys,
    metrics: settlementMetrics(registry),
  };
  const authorized = bearerCheck(resolved.tokens);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === METRICS_PATH && (req.method === 'GET' || req.method === 'HEAD')) {
      const text = await registry.metrics();
      return send(res, 200, registry.contentType, Buffer.from(text));
    }
    if (path !== TRACES_PATH) return send(res, 404, 'text/plain', Buffer.from('not found\n'));
    if (req.method !== 'POST') return send(res, 405, 'text/plain', Buffer.from('POST only\n'), { allow: 'POST' });

    const encoding = encodingOf(req.headers['content-type']);
    // Errors are answered in the request's encoding; protobuf when it named none we know.
    const fail = (status: number, message: string, headers?: Record<string, string>) =>
      send(res, status, CONTENT_TYPES[encoding ?? 'protobuf'], encodeStatus(encoding ?? 'protobuf', message), headers);

    if (!authorized(req.headers.authorization)) {
      return fail(401, 'missing or unknown bearer token', { 'www-authenticate': 'Bearer' });
    }
    if (!encoding) return fail(415, `unsupported content-type ${req.headers['content-type'] ?? '(none)'}`);

    const body = await readBody(req, encoding, maxBodyBytes);
    if (!body.ok) return fail(body.status, body.message, body.status === 413 ? { connection: 'close' } : undefined);
    const decoded = decodeExportRequest(body.bytes, encoding, SETTLEMENT_ATTRIBUTES);
    if (!decoded.ok) return fail(400, decoded.error);

    const result = await settleSpans(decoded.spans, context);
    if (!result.ok) {
      onError(result.error);
      return fail(503, 'the ledger is unavailable; retry later', { 'retry-after': String(retryAfterSeconds) });
    }
    const partialSuccess =
      result.rejected === 0
        ? undefined
        : {
            rejectedSpans: result.rejected,
            errorMessage: `${result.rejected} billing span(s) rejected: ${result.messages.join('; ')}${result.rejected > result.messages.length ? '; …' : ''}`,
          };
    return send(res, 200, CONTENT_TYPES[encoding], encodeExportResponse(encoding, partialSuccess));
  }

  return (req, res) => {
    handle(req, res).catch((error: unknown) => {
      // A bug or an aborted request, not a bad body: say so if the client is still there.
      onError(error);
      if (!res.headersSent && !res.destroyed) send(res, 500, 'text/plain', Buffer.from('internal error\n'));
    });
  };
}

/** A node:http server (not yet listening) serving the settlement endpoint. */
export function createSettlementServer(options: SettlementServerOptions): Server {
  return createServer(createSettlementHandler(options));
}

function send(res: ServerResponse, status: number, contentType: string, body: Uint8Array, headers: Record<string, string> = {}): void {
  res.writeHead(status, { ...headers, 'content-type': contentType, 'content-length': body.length });
  res.end(body);
}

/** Accepts any of the tokens; compares digests in constant time so timing tells nothing. */
function bearerCheck(tokens: string[]): (header: string | undefined) => boolean {
  if (tokens.length === 0) return () => true; // auth 'none', validated by parseServerOptions
  const digest = (token: string) => createHash('sha256').update(token).digest();
  const accepted = tokens.map(digest);
  return (header) => {
    const match = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
    if (!match) return false;
    const presented = digest(match[1]!);
    let ok = false;
    for (const token of accepted) ok = timingSafeEqual(token, presented) || ok;
    return ok;
  };
}

type BodyResult = { ok: true; bytes: Buffer } | { ok: false; status: 400 | 413 | 415; message: string };

/**
 * The request body, decompressed, never more than `limit` bytes before or after decompression
 * (a gzip bomb is refused with 413 as soon as its output passes the limit).
 */
async function readBody(req: IncomingMessage, encoding: OtlpEncoding, limit: number): Promise<BodyResult> {
  const contentEncoding = (req.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  if (contentEncoding !== 'identity' && contentEncoding !== 'gzip') {
    return { ok: false, status: 415, message: `unsupported content-encoding ${contentEncoding}` };
  }
  const tooLarge = { ok: false, status: 413, message: `request body exceeds ${limit} bytes` } as const;
  if (Number(req.headers['content-length']) > limit) return tooLarge;
  const raw = await readLimited(req, limit);
  if (!raw) return tooLarge;
  if (contentEncoding === 'identity') return { ok: true, bytes: raw };
  try {
    return { ok: true, bytes: await gunzipAsync(raw, { maxOutputLength: limit }) };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return tooLarge;
    return { ok: false, status: 400, message: `malformed gzip ${encoding} body: ${(error as Error).message}` };
  }
}

/** Reads the whole body, or undefined as soon as it passes `limit` (the rest is discarded). */
function readLimited(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.off('data', onData);
        req.resume(); // keep draining so the 413 can be written
        resolve(undefined);
      } else {
        chunks.push(chunk);
      }
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, size)));
    req.once('error', reject);
    req.once('close', () => {
      if (!req.complete) reject(new Error('request aborted before its body ended'));
    });
  });
}
