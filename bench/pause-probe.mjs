// Loaded into the target with --import: measures how long its event loop stalls. A 5 ms interval timer
// records its largest lateness; SIGUSR2 prints {"maxStallMs", "rssHwmMb"} on stderr and resets.
let last = performance.now();
let max = 0;
setInterval(() => {
  const now = performance.now();
  max = Math.max(max, now - last - 5);
  last = now;
}, 5).unref();
process.on('SIGUSR2', () => {
  process.stderr.write(`PAUSE ${JSON.stringify({ maxStallMs: Math.round(max), heapUsedMb: Math.round(process.memoryUsage().heapUsed / 2 ** 20) })}\n`);
  max = 0;
});
