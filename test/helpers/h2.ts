import http2 from 'node:http2';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A self-signed certificate for 127.0.0.1/localhost, made by openssl for this test run (never committed). */
export function selfSignedCert(): { key: Buffer; cert: Buffer } {
  const dir = mkdtempSync(join(tmpdir(), 'streamscope-h2-cert-'));
  try {
    execFileSync(
      'openssl',
      [
        'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-sha256', '-days', '1',
        '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    return { key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface H2Result {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  /** Body bytes received before the client reset the stream (or all of them). */
  bytes: number;
  reset: boolean;
}

export interface H2GetOptions {
  /** Send RST_STREAM (CANCEL) once this many body bytes arrived. */
  resetAfter?: number;
  /** Read nothing until this promise resolves (the stream's flow-control window fills up). */
  holdUntil?: Promise<unknown>;
  headers?: http2.OutgoingHttpHeaders;
}

/** One HTTP/2 request on `session`; resolves when the stream closed. */
export function h2get(session: http2.ClientHttp2Session, path: string, o: H2GetOptions = {}): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path, ...o.headers });
    const chunks: Buffer[] = [];
    let bytes = 0;
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    let reset = false;
    req.on('response', (h) => {
      headers = h;
      status = Number(h[':status']);
    });
    if (o.holdUntil !== undefined) {
      req.pause();
      void o.holdUntil.then(() => req.resume());
    }
    req.on('data', (c: Buffer) => {
      if (reset) return;
      chunks.push(c);
      bytes += c.length;
      if (o.resetAfter !== undefined && bytes >= o.resetAfter) {
        reset = true;
        req.close(http2.constants.NGHTTP2_CANCEL);
      }
    });
    req.on('error', (err) => (reset ? undefined : reject(err)));
    req.on('close', () => resolve({ status, headers, body: Buffer.concat(chunks), bytes, reset }));
    req.end();
  });
}
