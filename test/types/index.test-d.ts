// Type test of the main entry as an ESM user compiles it (test/types.test.ts runs tsc on it in an app folder
// where `streamscope` is the installed tarball). `@ts-expect-error` lines are what must NOT compile.
import http from 'node:http';
import http2 from 'node:http2';
import express from 'express';
import { expectTypeOf } from 'expect-type';
import {
  createHub,
  errorCodes,
  Hub,
  instrument,
  memoryStore,
  MemoryStore,
  redisStore,
  RedisStore,
  sse,
  SseStream,
  startAgent,
  StreamClosedError,
  StreamscopeError,
  type Agent,
  type AgentOptions,
  type ErrorCode,
  type HttpHandler,
  type HubStore,
  type RejectReason,
  type SseEvent,
} from 'streamscope';

// instrument(): an inline handler takes Express's types from app.get()'s context (issue 22), route params included.
const app = express();
app.get(
  '/x/:id',
  instrument(async (req, res) => {
    expectTypeOf(req.params.id).toEqualTypeOf<string>();
    res.json({ id: req.params.id });
  }),
);
app.get(
  '/y/:id',
  instrument((req, res, next) => {
    if (req.params.id === '') return next(new Error('empty'));
    res.status(200).type('text/event-stream').write('data: x\n\n');
  }),
);
app.use(instrument((req, _res, next) => { expectTypeOf(req.query).not.toBeAny(); next(); }));
// ... node:http's types without a framework around it, and the handler's own shape comes back
http.createServer(instrument((req, res) => { expectTypeOf(req).toEqualTypeOf<http.IncomingMessage>(); res.end(req.url); }));
const plain = instrument(async (req, res) => {
  expectTypeOf(res).toEqualTypeOf<http.ServerResponse>();
  res.end(req.method);
  return 42;
});
expectTypeOf(plain).returns.toEqualTypeOf<Promise<number>>();
// ... handlers typed by hand keep their types (Express's, node's, HTTP/2's compatibility API, a `stream` event's)
const typedExpress = instrument((req: express.Request<{ id: string }>, res: express.Response) => res.send(req.params.id));
expectTypeOf(typedExpress).parameter(0).toEqualTypeOf<express.Request<{ id: string }>>();
app.get('/typed/:id', typedExpress);
http2.createServer(instrument((req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => res.end(req.url)));
http2.createServer().on('stream', instrument((stream: http2.ServerHttp2Stream) => stream.end()));
const asHandler: HttpHandler = (req: http.IncomingMessage, res: http.ServerResponse) => res.end();
void asHandler;
// @ts-expect-error a plain handler's req is IncomingMessage: no Express params without Express around it
instrument((req) => req.params);
// @ts-expect-error not a function
instrument(42);

// sse(): the public interface, nothing of the implementation
http.createServer(async (req, res) => {
  const s = sse(req, res, { heartbeatMs: 1000, rateLimit: { burst: 2, perSecond: 1 }, shed: { maxStreams: 10 } });
  expectTypeOf(s).toEqualTypeOf<SseStream>();
  expectTypeOf(s.rejected).toEqualTypeOf<RejectReason | null>();
  expectTypeOf(s.send).parameter(0).toEqualTypeOf<SseEvent | string>();
  expectTypeOf(s.signal).toEqualTypeOf<AbortSignal>();
  expectTypeOf<keyof SseStream>().toEqualTypeOf<
    'lastEventId' | 'rejected' | 'lastSentId' | 'closed' | 'signal' | 'traceId' | 'send' | 'comment' | 'close' | 'fail' | 'run' | 'whenWritable'
  >();
  if (s instanceof SseStream) await s.send({ event: 'x', data: { a: 1 } });
  // @ts-expect-error users do not construct a stream: sse() and hub.subscribe() do
  new SseStream(req, res, {} as never, null);
  // @ts-expect-error internal state is not part of the type
  void s.state;
  // @ts-expect-error read-only
  s.closed = true;
});

// the hub and its stores
const hub = createHub({ store: memoryStore({ maxEvents: 100 }) });
expectTypeOf(hub).toEqualTypeOf<Hub>();
expectTypeOf(hub.publish('room', { data: 1 })).toEqualTypeOf<Promise<string>>();
expectTypeOf(hub.subscribe).returns.toEqualTypeOf<Promise<SseStream | null>>();
expectTypeOf(new Hub({ heartbeatMs: 1000 })).toEqualTypeOf<Hub>();
expectTypeOf(memoryStore()).toEqualTypeOf<MemoryStore>();
expectTypeOf(memoryStore()).toMatchTypeOf<HubStore>();
expectTypeOf(redisStore({ url: 'redis://127.0.0.1:6379' })).toEqualTypeOf<RedisStore>();
expectTypeOf(redisStore({ url: 'redis://127.0.0.1:6379' })).toMatchTypeOf<HubStore>();
// @ts-expect-error the memory store's synchronous append is the hub's, not the user's
memoryStore().appendSync('c', undefined, 'd');
// a store of the user's own fits where a store goes
declare const mine: HubStore;
createHub({ store: mine });

// the agent
const agent = startAgent({ dir: '/tmp/x' } satisfies AgentOptions);
expectTypeOf(agent).toEqualTypeOf<Agent>();
expectTypeOf(agent.ready).toEqualTypeOf<Promise<void>>();

// errors
expectTypeOf(errorCodes.STREAMSCOPE_ERR_STORE).toBeString();
expectTypeOf<'STREAMSCOPE_ERR_STORE'>().toMatchTypeOf<ErrorCode>();
expectTypeOf(new StreamClosedError()).toMatchTypeOf<StreamscopeError>();
expectTypeOf(new StreamscopeError('STREAMSCOPE_ERR_STORE').code).toEqualTypeOf<ErrorCode>();
// @ts-expect-error not a code
new StreamscopeError('STREAMSCOPE_ERR_NOPE');
