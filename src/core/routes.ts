import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RouteOption } from '../types.js';
import { kRoute } from './symbols.js';
export { kRoute };

/** Framework adapters put the route template here before the handler writes. */

type ReqWithRoute = IncomingMessage & {
  [kRoute]?: string;
  route?: { path?: unknown };
  baseUrl?: unknown;
};

const NUMERIC = /^\d+$/;
const HEXISH = /^[0-9a-f]{12,}$/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A path with its identifiers folded (`/users/42/events` → `/users/:id/events`), the query dropped,
 * and the depth capped, so that a route label stays low-cardinality without a framework.
 */
export function normalizePath(url: string | undefined): string {
  if (url === undefined || url === '') return '/';
  let end = url.length;
  const q = url.indexOf('?');
  if (q >= 0) end = q;
  const h = url.indexOf('#');
  if (h >= 0 && h < end) end = h;
  const path = url.slice(0, end);
  if (path === '/' || path.indexOf('/', 1) < 0 && !NUMERIC.test(path.slice(1)) && path.length < 64) return path || '/';
  const parts = path.split('/');
  const out: string[] = [];
  for (let i = 0; i < parts.length && out.length < 6; i++) {
    const p = parts[i] as string;
    if (i > 0 && p === '') continue;
    out.push(NUMERIC.test(p) || UUID.test(p) || HEXISH.test(p) || p.length > 40 ? ':id' : p);
  }
  return out.join('/') || '/';
}

/** The route label for a response: explicit option, framework template, else normalized path. */
export function resolveRoute(option: RouteOption | undefined, req: IncomingMessage, res: ServerResponse): string {
  if (typeof option === 'string') return option;
  if (typeof option === 'function') {
    const r = option(req, res);
    if (typeof r === 'string' && r !== '') return r;
  }
  const r = req as ReqWithRoute;
  const tagged = r[kRoute];
  if (typeof tagged === 'string') return tagged;
  // Express (4 and 5) sets req.route while dispatching to a route's handler.
  const p = r.route?.path;
  if (typeof p === 'string') return (typeof r.baseUrl === 'string' ? r.baseUrl : '') + p;
  return normalizePath(req.url);
}
