/**
 * The request and response classes for the http server of an Express app, so that Node's request
 * and response objects keep the fast hidden classes they are made with. Hand-written for the hot
 * path: nothing in Express or Node offers it, and every request pays for its absence.
 *
 * Express gives each request and response its app's prototype (Object.setPrototypeOf(req,
 * app.request)). V8 shares the hidden class an object gets from that, but no longer shares any
 * hidden class it gets after it: each property added later (res.locals first, then Router's,
 * express-http-proxy's and Node's own) makes a hidden class of that one object. Property caches
 * then never hit on requests and responses, in Express, express-http-proxy, Node's HTTP code or
 * here, and each object carries its own chain of hidden classes.
 *
 * Node's http.createServer takes the classes it makes requests and responses with. The classes
 * made here have the app's prototypes as their own (Express's methods and `app` moved onto
 * them), so Express's setPrototypeOf sets the prototype an object already has, which changes
 * nothing, and every request shares the hidden classes of the one before it.
 *
 *   http.createServer(expressServerClasses(app), app)
 *
 * The classes serve the app they are made for: a request that an app mounted under it handles
 * gets that app's prototype for the while, and unshared hidden classes with it.
 */
import http from 'node:http';
import type { Express } from 'express';

export interface ServerClasses {
  IncomingMessage: typeof http.IncomingMessage;
  ServerResponse: typeof http.ServerResponse;
}

/** The prototypes of the classes made here: their objects need no help from the middleware. */
const adoptedPrototypes = new WeakSet<object>();

/** The classes made for each app: a second server of the same app (HTTP and HTTPS) shares them. */
const classesOf = new WeakMap<Express, ServerClasses>();

export function expressServerClasses(app: Express): ServerClasses {
  let classes = classesOf.get(app);
  if (classes === undefined) {
    const Request = class extends http.IncomingMessage {};
    const Response = class extends http.ServerResponse {};
    adopt(app, 'request', Request.prototype);
    adopt(app, 'response', Response.prototype);
    // The class is not generic as ServerResponse is; the server makes it with its own requests.
    classes = { IncomingMessage: Request, ServerResponse: Response as typeof http.ServerResponse };
    classesOf.set(app, classes);
  }
  return classes;
}

/** Makes `prototype` the app's request (or response) prototype in place of the one Express made. */
function adopt(app: Express, key: 'request' | 'response', prototype: object): void {
  const made = app[key];
  Object.setPrototypeOf(prototype, Object.getPrototypeOf(made));
  Object.defineProperties(prototype, Object.getOwnPropertyDescriptors(made));
  (app as unknown as Record<typeof key, object>)[key] = prototype;
  adoptedPrototypes.add(prototype);
}

/** True when `object` was made by a server given expressServerClasses (and still has its class). */
export function hasServerClass(object: object): boolean {
  return adoptedPrototypes.has(Object.getPrototypeOf(object));
}
