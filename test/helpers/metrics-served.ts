import type http from 'node:http';
import type { metricsHandler } from '../../src/index.js';

/** What a metricsHandler() answers to one request, as text (a minimal response object: no socket, no server). */
export async function served(handler: ReturnType<typeof metricsHandler>): Promise<string> {
  let body = '';
  const res = {
    statusCode: 0,
    setHeader() {},
    end(b: Buffer | string) {
      body = String(b);
    },
  };
  await handler({} as http.IncomingMessage, res as unknown as http.ServerResponse);
  return body;
}
