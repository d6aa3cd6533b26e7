// One client process of the scale bench (bench/scale/run.mjs starts several, each under its own fd limit): opens
// streams and holds them until told to close them. Commands over IPC:
//   { cmd: 'open', port, paths: [..], n, localAddress, h2, perSession }  -> { opened, failed }
//   { cmd: 'close' }                                                      -> { closed }
// HTTP/1.1: one socket per stream, from `localAddress` (127.0.0.x: each source address has its own ephemeral
// ports). HTTP/2: `perSession` streams on each connection.
import http from 'node:http';
import http2 from 'node:http2';

const held = [];
const sessions = [];

function openH1(port, path, localAddress) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, localAddress }, (r) => {
      r.once('data', () => resolve(true));
      r.on('error', () => {});
    });
    req.on('error', () => resolve(false));
    held.push(req);
  });
}

function openH2(session, path) {
  return new Promise((resolve) => {
    const st = session.request({ ':path': path });
    st.once('data', () => resolve(true));
    st.on('error', () => resolve(false));
    held.push(st);
  });
}

async function open({ port, paths, n, localAddress, h2, perSession }) {
  let opened = 0;
  let failed = 0;
  const batch = h2 ? 500 : 200;
  let session = null;
  let onSession = 0;
  for (let k = 0; k < n; k += batch) {
    const jobs = [];
    for (let j = k; j < Math.min(n, k + batch); j++) {
      const path = paths[j % paths.length];
      if (h2) {
        if (session === null || onSession >= perSession) {
          session = http2.connect(`http://127.0.0.1:${port}`, { localAddress, maxSessionMemory: 4096, settings: { initialWindowSize: 65535 } });
          session.on('error', () => {});
          sessions.push(session);
          onSession = 0;
        }
        onSession++;
        jobs.push(openH2(session, path));
      } else {
        jobs.push(openH1(port, path, localAddress));
      }
    }
    for (const ok of await Promise.all(jobs)) {
      if (ok) opened++;
      else failed++;
    }
  }
  return { opened, failed };
}

function closeAll() {
  for (const r of held) r.destroy();
  held.length = 0;
  for (const s of sessions) s.destroy();
  sessions.length = 0;
  return { closed: true };
}

process.on('message', async (m) => {
  if (m.cmd === 'open') process.send(await open(m));
  else if (m.cmd === 'close') process.send(closeAll());
  else if (m.cmd === 'exit') process.exit(0);
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
