/**
 * expressServerClasses: requests and responses keep shared hidden classes through Express, and
 * Express works as before. The hidden classes are read with V8's own checks (%HaveSameMap,
 * %HasFastProperties), which functions compiled after --allow-natives-syntax is set may call.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import { expect } from 'chai';
import express5, { type Express, type Request, type Response } from 'express';
import express4 from 'express4';
import { expressServerClasses } from '../../plugin/index.js';
import { hasServerClass } from '../../plugin/server-classes.js';

v8.setFlagsFromString('--allow-natives-syntax');
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;
const hasFastProperties = new Function('a', 'return %HasFastProperties(a)') as (a: object) => boolean;

interface Pair {
  req: Request;
  res: Response;
}

/**
 * Serves `app` and sends it two requests at once, with a middleware that adds a property to each
 * request and response (as Router and express-http-proxy do) and holds them until both arrived:
 * the pair is read at the same point of handling, then answered.
 */
async function twoRequestsAtOnce(app: Express, classes?: ReturnType<typeof expressServerClasses>) {
  const held: Pair[] = [];
  let inspected: { sameMaps: boolean; fast: boolean; served: boolean } | undefined;
  app.use((req: Request, res: Response) => {
    (req as unknown as Record<string, unknown>).added = 1;
    res.locals.added = 1;
    (res as unknown as Record<string, unknown>).added = 1;
    held.push({ req, res });
    if (held.length < 2) return;
    const [a, b] = held as [Pair, Pair];
    inspected = {
      sameMaps: haveSameMap(a.req, b.req) && haveSameMap(a.res, b.res),
      fast: [a.req, a.res, b.req, b.res].every(hasFastProperties),
      served: hasServerClass(a.req) && hasServerClass(a.res),
    };
    for (const { req, res } of held) res.status(201).json({ path: req.path, query: req.query, probe: req.get('x-probe'), app: res.app === app });
  });
  const server = classes ? http.createServer(classes, app) : http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const get = (path: string) =>
    new Promise<string>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, headers: { 'x-probe': 'probe' } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve(`${res.statusCode} ${res.headers['content-type']} ${body}`));
        })
        .on('error', reject);
    });
  try {
    const answers = await Promise.all([get('/first?x=1'), get('/second')]);
    return { inspected: inspected!, answers };
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

for (const [name, express] of [['Express 5', express5], ['Express 4', express4]] as const) {
  describe(`expressServerClasses (${name})`, () => {
    it('without it, Express leaves each request and response a hidden class of its own', async () => {
      const { inspected } = await twoRequestsAtOnce(express());
      expect(inspected.sameMaps).to.equal(false);
      expect(inspected.served).to.equal(false);
    });

    it('with it, requests and responses share fast hidden classes, and Express works as before', async () => {
      const app = express();
      const { inspected, answers } = await twoRequestsAtOnce(app, expressServerClasses(app));
      expect(inspected).to.deep.equal({ sameMaps: true, fast: true, served: true });
      expect(answers).to.deep.equal([
        '201 application/json; charset=utf-8 {"path":"/first","query":{"x":"1"},"probe":"probe","app":true}',
        '201 application/json; charset=utf-8 {"path":"/second","query":{},"probe":"probe","app":true}',
      ]);
    });

    it('a second server of the same app gets the same classes, and the app keeps working', async () => {
      const app = express();
      const classes = expressServerClasses(app);
      expect(expressServerClasses(app)).to.equal(classes);
      const { inspected } = await twoRequestsAtOnce(app, expressServerClasses(app));
      expect(inspected).to.deep.equal({ sameMaps: true, fast: true, served: true });
    });
  });
}
