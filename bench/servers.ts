/**
 * Benchmark server processes. `node servers.js foresight|bare` starts one on a
 * free loopback port and talks to the runner over IPC: it sends `{ready:url}`,
 * and answers `gc` with its memory after a full collection.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapSpaceStatistics, getHeapStatistics } from 'node:v8';
import { readFileSync } from 'node:fs';
import { WebSocketServer } from 'ws';
import { createLogger } from '../src/adapters/logger.ts';
import { loadConfig } from '../src/config.ts';
import { startServer } from '../src/server.ts';
import { fixedLatencyInference, type ChunkStats } from './fixed-latency-inference.ts';

const MAX_FRAME_BYTES = 4 * 1024 * 1024;

/** The baseline: a plain `ws` ack server (noServer upgrade, maxPayload, bufferutil when installed). */
async function startBare(): Promise<string> {
  const server = createServer((_req, res) => res.writeHead(404).end());
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES, clientTracking: false, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      let frame = 0;
      ws.on('message', (data: Buffer, isBinary) => {
        if (!isBinary) return;
        frame += 1;
        ws.send(`{"frame":${frame},"bytes":${data.length}}`);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const stats: ChunkStats = { chunks: 0, frames: 0, bytes: 0, framesSeen: 0 };

async function startForesight(): Promise<string> {
  const config = loadConfig({
    ...process.env,
    PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: 'error',
    DATABASE_PATH: process.env.DATABASE_PATH ?? ':memory:',
    VISION_MAX_FRAME_BYTES: String(MAX_FRAME_BYTES),
    // (a)-(d) measure capacity, not the per-connection rate limits: (a) alone sends 50,000
    // frames a second on one connection. The flood scenario runs with the defaults.
    ...(process.env.BENCH_RATE_LIMITS === 'default'
      ? {}
      : { VISION_MAX_MESSAGES_PER_S: '1000000000', VISION_MAX_BYTES_PER_S: '1000000000000' }),
  });
  const latencyMs = Number(process.env.BENCH_INFERENCE_MS ?? 300);
  const server = await startServer({
    config,
    inference: fixedLatencyInference(latencyMs, stats),
    logger: createLogger('error'),
  });
  return server.url;
}

const kind = process.argv[2];
const loopDelay = monitorEventLoopDelay({ resolution: 1 });
loopDelay.enable();
const url = kind === 'bare' ? await startBare() : await startForesight();
process.on('message', (message) => {
  if (message === 'loop-reset') {
    loopDelay.reset();
    return;
  }
  if (message === 'gc') {
    (globalThis as { gc?: () => void }).gc?.();
    const memory = process.memoryUsage();
    const spaces = Object.fromEntries(
      getHeapSpaceStatistics().map((s) => [s.space_name, Math.round(s.space_size / 1024)]),
    );
    const loop = { p50: loopDelay.percentile(50) / 1e6, p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 };
    loopDelay.reset();
    const heap = getHeapStatistics();
    const smaps = readFileSync('/proc/self/smaps_rollup', 'utf8').split('\n').filter((l) => /^(Rss|Anonymous|Private_Dirty)/.test(l)).join('; ');
    const v8 = { physical: heap.total_physical_size, malloced: heap.malloced_memory, peakMalloced: heap.peak_malloced_memory, smaps };
    process.send?.({ v8, loop, rss: memory.rss, heapUsed: memory.heapUsed, external: memory.external, arrayBuffers: memory.arrayBuffers, spaces, chunkStats: { ...stats } });
  }
});
process.on('disconnect', () => process.exit(0));
process.send?.({ ready: url });
