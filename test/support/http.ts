/**
 * A raw HTTP client for byte-exact assertions: fetch would decompress and strip a BOM.
 */
import http from 'node:http';
import { createHash } from 'node:crypto';

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Header names and values exactly as they came on the wire. */
  rawHeaders: string[];
  body: Buffer;
}

export function post(
  url: string,
  body: Buffer | string,
  headers: http.OutgoingHttpHeaders = {},
  agent?: http.Agent,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, agent });
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (part: Buffer) => parts.push(part));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(parts) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
