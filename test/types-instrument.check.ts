// Compile-time test (run by `tsc --noEmit` in `npm test`): instrument() keeps node:http contextual
// types for plain handlers and accepts framework handlers typed with their own Request/Response.
import type { Request, Response } from 'express';
import http from 'node:http';
import { instrument } from '../src/index.js';
const a = instrument((req: Request, res: Response) => { res.json({ a: req.params }); });
const b = instrument((req, res) => { const u: string | undefined = req.url; res.end(u); });
http.createServer(b);
void a;

// Inline handlers keep Express's types (issue 13): the README's form, with instrument from streamscope/express.
import express from 'express';
import { instrument as expressInstrument } from '../src/adapters/express.js';
const app = express();
app.get('/e/:id', expressInstrument(async (req, res) => {
  const id: string | string[] = req.params.id; // Express 5: ParamsDictionary values may be arrays (wildcards)
  res.json({ id });
}));
app.get('/n/:id', expressInstrument((req, res, next) => {
  if (req.params.id === '') return next(new Error('empty'));
  res.status(200).type('text/event-stream').write(`data: ${req.query.q as string}\n\n`);
}, { route: '/n/:id' }));
// still node:http types without a framework around it, and the handler's own shape is returned
const plain = instrument(async (req, res) => {
  const m: string | undefined = req.method;
  res.writeHead(200).end(m);
  return 42;
});
const r: Promise<number> = plain(new http.IncomingMessage(null as never), null as never);
void r;
// @ts-expect-error a plain handler's req is IncomingMessage: no Express params without Express around it
instrument((req) => req.params);
app.get('/typed/:id', expressInstrument<{ id: string }>((req, res) => res.send(req.params.id)));
// a node:http handler still fits an Express route through the adapter's instrument
app.get('/raw', expressInstrument((req: http.IncomingMessage, res: http.ServerResponse) => res.end(req.url)));
// the core instrument takes the types of a non-generic context: a typed handler variable
const typed: express.RequestHandler = instrument((req, res) => {
  res.json(req.params);
});
void typed;

// The main entry's instrument takes Express's types from app.get()'s context too, route params included (issue 22).
app.get('/m/:id', instrument(async (req, res) => {
  const id: string = req.params.id;
  res.json({ id });
}));
app.get('/m2/:id', instrument((req, res, next) => {
  if (req.params.id === '') return next(new Error('empty'));
  res.status(200).type('text/event-stream').write('data: x\n\n');
}));
