// Type test of `streamscope/client` as an ESM user compiles it (test/types.test.ts runs tsc on it in an app folder
// where `streamscope` is the installed tarball). `@ts-expect-error` lines are what must NOT compile.
import { expectTypeOf } from 'expect-type';
import { connect, StreamscopeError, type ClientEvent, type ClientOptions, type ResetInfo, type SseClient } from 'streamscope/client';

const client = connect('http://127.0.0.1:1/events', {
  checksum: 'crc32',
  onEvent(event) {
    expectTypeOf(event).toEqualTypeOf<ClientEvent>();
    expectTypeOf(event.data).toEqualTypeOf<string>();
  },
  onReset(info) {
    expectTypeOf(info).toEqualTypeOf<ResetInfo>();
  },
  onError(err) {
    expectTypeOf(err).toMatchTypeOf<StreamscopeError>();
  },
});
expectTypeOf(client).toEqualTypeOf<SseClient>();
expectTypeOf(client.close).toBeFunction();
expectTypeOf<ClientOptions['checksum']>().toMatchTypeOf<'crc32' | 'none' | undefined>();

// @ts-expect-error the options (with onEvent) are required
connect('http://127.0.0.1:1/events');
