// Compile-time test (run by `tsc --noEmit` in `npm test`): instrument() keeps node:http contextual
// types for plain handlers and accepts framework handlers typed with their own Request/Response.
import type { Request, Response } from 'express';
import http from 'node:http';
import { instrument } from '../src/index.js';
const a = instrument((req: Request, res: Response) => { res.json({ a: req.params }); });
const b = instrument((req, res) => { const u: string | undefined = req.url; res.end(u); });
http.createServer(b);
void a;
