// Type test of the main entry as a CommonJS user compiles it (`require` condition: dist/cjs/index.d.cts).
/* eslint-disable @typescript-eslint/no-require-imports -- `import x = require()` is how CommonJS TypeScript users import */
import http = require('node:http');
import express = require('express');
import { expectTypeOf } from 'expect-type';
import { createHub, instrument, memoryStore, sse, SseStream, startAgent, type Agent, type AgentOptions, type Hub, type RejectReason } from 'streamscope';
import streamscope = require('streamscope');

const app = express();
app.get(
  '/x/:id',
  instrument(async (req, res) => {
    expectTypeOf(req.params.id).toEqualTypeOf<string>();
    res.json({ id: req.params.id });
  }),
);
http.createServer(instrument((req, res) => { expectTypeOf(req).toEqualTypeOf<http.IncomingMessage>(); res.end(); }));
// @ts-expect-error a plain handler's req is IncomingMessage
instrument((req) => req.params);

http.createServer((req, res) => {
  const s = sse(req, res);
  expectTypeOf(s).toEqualTypeOf<SseStream>();
  expectTypeOf(s.rejected).toEqualTypeOf<RejectReason | null>();
  expectTypeOf<keyof SseStream>().toEqualTypeOf<
    'lastEventId' | 'rejected' | 'lastSentId' | 'closed' | 'signal' | 'traceId' | 'send' | 'comment' | 'close' | 'fail' | 'run' | 'whenWritable'
  >();
  // @ts-expect-error users do not construct a stream
  new SseStream(req, res, {} as never, null);
});
expectTypeOf(createHub()).toEqualTypeOf<Hub>();
// @ts-expect-error the hub's own path
memoryStore().appendSync('c', undefined, 'd');
expectTypeOf(startAgent({} satisfies AgentOptions)).toEqualTypeOf<Agent>();
expectTypeOf(streamscope.instrument).toEqualTypeOf(instrument);
