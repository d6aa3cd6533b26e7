/**
 * Hub ids as the client reads them: `[<epoch>:]<ms>-<seq>` (src/runtime/hub/ids.ts makes them; this copy has
 * no `node:` import, so it stays in the browser build). Ordered by `<ms>` then `<seq>`, numerically, within
 * an epoch; test/client.test.ts checks the order against the server's `compareIds`.
 */

const ID = /^(?:([0-9a-z]{1,32}):)?(\d{1,20})-(\d{1,20})$/;

export interface ParsedId {
  readonly epoch: string;
  readonly ms: string;
  readonly seq: string;
}

function strip(n: string): string {
  let i = 0;
  while (i < n.length - 1 && n.charCodeAt(i) === 48) i++;
  return i === 0 ? n : n.slice(i);
}

/** The parts of a hub id, or null when it is not one. */
export function parseId(id: string): ParsedId | null {
  const m = ID.exec(id);
  if (m === null) return null;
  return { epoch: m[1] ?? '', ms: strip(m[2] as string), seq: strip(m[3] as string) };
}

function cmpNum(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Negative, 0 or positive, by `<ms>-<seq>` (epochs are not compared). */
export function compareParsed(a: ParsedId, b: ParsedId): number {
  const c = cmpNum(a.ms, b.ms);
  return c !== 0 ? c : cmpNum(a.seq, b.seq);
}
