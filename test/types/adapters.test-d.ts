// Type test of the adapter entry points as an ESM user compiles them, with each framework's own types.
// One naming rule (docs/instrument.md, "Adapters"): every `streamscope/<framework>` exports `streamscope`, the
// framework's own way in (middleware or plugin), also as default; the old names are deprecated aliases.
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import Router from '@koa/router';
import { Hono } from 'hono';
import { serve } from '@hono/node-server';
import { expectTypeOf } from 'expect-type';
import 'streamscope/register';
import expressDefault, { streamscope as expressMiddleware, instrument as expressInstrument } from 'streamscope/express';
import fastifyDefault, { streamscope as fastifyPlugin, streamscopeFastify } from 'streamscope/fastify';
import koaDefault, { streamscope as koaMiddleware, streamscopeKoa } from 'streamscope/koa';
import honoDefault, { streamscope as honoMiddleware, streamscopeHono, instrumentFetch } from 'streamscope/hono';

// Express
const app = express();
app.use(expressMiddleware({ stallAfterMs: 1000 }));
app.use(expressDefault());
app.get('/e/:id', expressInstrument(async (req, res) => { res.json({ id: req.params.id }); }));
app.get('/t/:id', expressInstrument<{ id: string }>((req, res) => { expectTypeOf(req.params.id).toEqualTypeOf<string>(); res.end(); }));
// @ts-expect-error options are checked
expressMiddleware({ stallAfterMs: 'soon' });

// Fastify: the plugin itself
const fy = Fastify();
await fy.register(fastifyPlugin, { stallAfterMs: 1000, route: '/x' });
await fy.register(fastifyDefault);
await fy.register(streamscopeFastify, {});
expectTypeOf(streamscopeFastify).toEqualTypeOf(fastifyPlugin);
expectTypeOf(fastifyDefault).toEqualTypeOf(fastifyPlugin);
// @ts-expect-error options are checked
await fy.register(fastifyPlugin, { stallAfterMs: 'soon' });

// Koa (and @koa/router's route template)
const koa = new Koa();
koa.use(koaMiddleware({ danglingAfterMs: 2000 }));
koa.use(koaDefault());
koa.use(streamscopeKoa());
const router = new Router();
router.get('/k/:id', (ctx) => { ctx.body = ctx.params.id; });
koa.use(router.routes());
expectTypeOf(streamscopeKoa).toEqualTypeOf(koaMiddleware);
// @ts-expect-error options are checked
koaMiddleware({ danglingAfterMs: 'later' });

// Hono on @hono/node-server
const hono = new Hono();
hono.use(honoMiddleware());
hono.use('*', honoDefault({ route: '/h' }));
hono.use(streamscopeHono());
hono.get('/sse/:room', (c) => c.text(c.req.param('room')));
serve({ fetch: hono.fetch, port: 0 });
serve({ fetch: instrumentFetch((req: Request) => new Response(req.url), { route: '/fetch' }), port: 0 });
expectTypeOf(streamscopeHono).toEqualTypeOf(honoMiddleware);
// @ts-expect-error options are checked
honoMiddleware({ maxRoutes: 'many' });
