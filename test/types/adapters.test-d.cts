// Type test of the adapter entry points as a CommonJS user compiles them (`require` condition: dist/cjs/*.d.cts).
/* eslint-disable @typescript-eslint/no-require-imports -- `import x = require()` is how CommonJS TypeScript users import */
import express = require('express');
import Fastify from 'fastify';
import Koa = require('koa');
import { Hono } from 'hono';
import { expectTypeOf } from 'expect-type';
import expressAdapter = require('streamscope/express');
import fastifyAdapter = require('streamscope/fastify');
import koaAdapter = require('streamscope/koa');
import honoAdapter = require('streamscope/hono');
import 'streamscope/register';

const app = express();
app.use(expressAdapter.streamscope());
app.get('/e/:id', expressAdapter.instrument(async (req, res) => { res.json({ id: req.params.id }); }));
void Fastify().register(fastifyAdapter.streamscope, { stallAfterMs: 1000 });
expectTypeOf(fastifyAdapter.streamscopeFastify).toEqualTypeOf(fastifyAdapter.streamscope);
expectTypeOf(fastifyAdapter.default).toEqualTypeOf(fastifyAdapter.streamscope);
new Koa().use(koaAdapter.streamscope());
expectTypeOf(koaAdapter.streamscopeKoa).toEqualTypeOf(koaAdapter.streamscope);
new Hono().use(honoAdapter.streamscope());
expectTypeOf(honoAdapter.streamscopeHono).toEqualTypeOf(honoAdapter.streamscope);
// @ts-expect-error options are checked
koaAdapter.streamscope({ stallAfterMs: 'soon' });
