/**
 * Load generator, run as its own process (pinned to its own core by the
 * runner). Reads a scenario from argv, reports phases and results over IPC.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';

export type Scenario =
  | { kind: 'saturate'; url: string; frameBytes: number; inFlight: number; warmupMs: number; durationMs: number }
  | { kind: 'paced'; url: string; sessions: number; fps: number; frameBytes: number; warmupMs: number; durationMs: number }
  | { kind: 'massClose'; url: string; sessions: number; warmupMs: number; beforeMs: number; afterMs: number }
  | { kind: 'flood'; url: string; warmupMs: number; aloneMs: number; floodMs: number };

interface Latencies {
  p50: number;
  p99: number;
  count: number;
}

export interface LoadResult {
  acks: number;
  elapsedMs: number;
  latenciesMs?: Latencies;
  /** (b): from a window's latest frame leaving this side to the ack carrying its caption arriving. */
  captionLatenciesMs?: Latencies;
  /** The live session's ack round trips before the load of the scenario, and during it. */
  before?: Latencies;
  during?: Latencies;
  /** How long closing every session took, until the last socket was closed on this side. */
  closedMs?: number;
  errors: number;
}

/** Waits for the runner to take its measurements at a named point. */
function phase(name: string): Promise<void> {
  return new Promise((resolve) => {
    const onMessage = (message: unknown) => {
      if ((message as { go?: string }).go === name) {
        process.off('message', onMessage);
        resolve();
      }
    };
    process.on('message', onMessage);
    process.send?.({ phase: name });
  });
}

function connect(url: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/vision/stream`, { perMessageDeflate: false });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

const percentile = (sorted: Float64Array, p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;

async function saturate(s: Extract<Scenario, { kind: 'saturate' }>): Promise<LoadResult> {
  const ws = await connect(s.url);
  const payload = randomBytes(s.frameBytes);
  let acks = 0;
  let counting = false;
  let errors = 0;
  ws.on('message', (data: Buffer) => {
    if (data[2] !== 0x66) errors += 1; // every ack starts with {"frame"
    if (counting) acks += 1;
    ws.send(payload);
  });
  for (let i = 0; i < s.inFlight; i++) ws.send(payload);
  await new Promise((r) => setTimeout(r, s.warmupMs));
  await phase('start');
  counting = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, s.durationMs));
  counting = false;
  const elapsedMs = performance.now() - started;
  await phase('end');
  ws.terminate();
  return { acks, elapsedMs, errors };
}

async function paced(s: Extract<Scenario, { kind: 'paced' }>): Promise<LoadResult> {
  const shared = randomBytes(s.frameBytes);
  const sockets: WebSocket[] = [];
  for (let i = 0; i < s.sessions; i += 50) {
    sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, s.sessions - i) }, () => connect(s.url)))));
  }
  await phase('connected');
  const periodMs = 1000 / s.fps;
  const capacity = Math.ceil((s.sessions * s.fps * (s.warmupMs + s.durationMs + 5_000)) / 1000);
  const latencies = new Float64Array(capacity);
  const captionLatencies: number[] = [];
  let count = 0;
  let acks = 0;
  let errors = 0;
  let measuring = false;
  const timers: NodeJS.Timeout[] = [];
  for (const [i, ws] of sockets.entries()) {
    const sentAt: number[] = [];
    // Each frame carries its sequence number in its first 4 bytes; the fake model names the
    // window's latest one in the caption (bench/fixed-latency-inference.ts). `ws` masks a copy,
    // so the session's one buffer is stamped again before each send.
    const payload = Buffer.from(shared);
    const sentBySequence: number[] = [];
    let sequence = 0;
    ws.on('message', (data: Buffer) => {
      const now = performance.now();
      const sent = sentAt.shift();
      if (sent === undefined || data[2] !== 0x66) {
        errors += 1;
        return;
      }
      if (measuring) {
        acks += 1;
        if (count < capacity) latencies[count++] = now - sent;
        if (data.includes('"caption"')) {
          const last = /last #(\d+)/.exec(data.toString())?.[1];
          const frameSent = last === undefined ? undefined : sentBySequence[Number(last)];
          if (frameSent !== undefined) captionLatencies.push(now - frameSent);
        }
      }
    });
    const send = () => {
      const now = performance.now();
      sentAt.push(now);
      sequence += 1;
      payload.writeUInt32BE(sequence, 0);
      sentBySequence[sequence] = now;
      ws.send(payload);
    };
    // Spread sessions over the frame period so the load is steady, not bursts.
    timers.push(
      setTimeout(() => {
        send();
        timers.push(setInterval(send, periodMs));
      }, (i * periodMs) / s.sessions),
    );
  }
  await new Promise((r) => setTimeout(r, s.warmupMs));
  await phase('start');
  measuring = true;
  const started = performance.now();
  await new Promise((r) => setTimeout(r, s.durationMs));
  measuring = false;
  const elapsedMs = performance.now() - started;
  for (const t of timers) clearTimeout(t);
  await phase('end');
  for (const ws of sockets) ws.terminate();
  const sorted = latencies.slice(0, count).sort();
  const captionsSorted = Float64Array.from(captionLatencies).sort();
  return {
    acks,
    elapsedMs,
    errors,
    latenciesMs: { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), count },
    captionLatenciesMs: { p50: percentile(captionsSorted, 0.5), p99: percentile(captionsSorted, 0.99), count: captionsSorted.length },
  };
}

/**
 * `sessions` live sessions sending 40 KiB frames at 30 fps (spread over the frame period),
 * recording each ack's round trip into the current bucket.
 */
async function liveSessions(url: string, sessions = 1) {
  const payload = randomBytes(40 * KiB);
  let bucket: number[] = [];
  const sockets: WebSocket[] = [];
  const timers: NodeJS.Timeout[] = [];
  for (let i = 0; i < sessions; i++) {
    const ws = await connect(url);
    sockets.push(ws);
    const sentAt: number[] = [];
    ws.on('message', (data: Buffer) => {
      const sent = sentAt.shift();
      if (sent !== undefined && data[2] === 0x66) bucket.push(performance.now() - sent);
    });
    const send = () => {
      sentAt.push(performance.now());
      ws.send(payload);
    };
    timers.push(setTimeout(() => timers.push(setInterval(send, 1000 / 30)), (i * 1000) / 30 / sessions));
  }
  return {
    /** Starts a new bucket and returns the last one's percentiles. */
    take(): Latencies {
      const sorted = Float64Array.from(bucket).sort();
      bucket = [];
      return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), count: sorted.length };
    },
    stop() {
      for (const timer of timers) clearTimeout(timer);
      for (const ws of sockets) ws.terminate();
    },
  };
}

const KiB = 1024;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * (e) `sessions` connections at 1 fps × 2 KiB, all closed at once (a redeploy, a network
 * cut), while a live session streams at 30 fps: its ack round trips before and during.
 */
async function massClose(s: Extract<Scenario, { kind: 'massClose' }>): Promise<LoadResult> {
  const payload = randomBytes(2 * KiB);
  const sockets: WebSocket[] = [];
  for (let i = 0; i < s.sessions; i += 100) {
    sockets.push(...(await Promise.all(Array.from({ length: Math.min(100, s.sessions - i) }, () => connect(s.url)))));
  }
  const timers = sockets.map((ws, i) =>
    setTimeout(() => {
      ws.send(payload);
      timers[i] = setInterval(() => ws.send(payload), 1000);
    }, (i * 1000) / s.sessions),
  );
  for (const ws of sockets) ws.on('error', () => undefined);
  const live = await liveSessions(s.url);
  await phase('connected');
  await sleep(s.warmupMs);
  live.take();
  await phase('start');
  await sleep(s.beforeMs);
  const before = live.take();
  const closing = performance.now();
  for (const t of timers) clearTimeout(t);
  const closed = Promise.all(sockets.map((ws) => new Promise((resolve) => ws.once('close', resolve))));
  for (const ws of sockets) ws.terminate();
  await closed;
  const closedMs = performance.now() - closing;
  await sleep(s.afterMs);
  const during = live.take();
  await phase('end');
  live.stop();
  return { acks: during.count, elapsedMs: s.beforeMs + s.afterMs, before, during, closedMs, errors: 0 };
}

/**
 * (f) Five neighbours at 30 fps × 40 KiB alone, then next to a client that sends 1-byte
 * frames as fast as it can and never reads its acks.
 */
async function flood(s: Extract<Scenario, { kind: 'flood' }>): Promise<LoadResult> {
  // Five neighbours, so a p99 rests on some 1,200 round trips and not on the third-worst of 240.
  const live = await liveSessions(s.url, 5);
  await phase('connected');
  await sleep(s.warmupMs);
  live.take();
  await sleep(s.aloneMs);
  const before = live.take();
  // The runner takes the server's memory (after a full collection) at `start`: not the flood's doing.
  await phase('start');
  live.take();
  const flooder = new WebSocket(`${s.url.replace(/^http/, 'ws')}/vision/stream`, { perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    flooder.once('open', resolve);
    flooder.once('error', reject);
  });
  flooder.on('error', () => undefined);
  const raw = (flooder as unknown as { _socket: Socket })._socket;
  // Never read: the acks pile up on the server's side of the connection, or would.
  raw.pause();
  // 4,096 masked binary frames of one byte each (the byte 1, masked with the key 1 2 3 4).
  const frames = Buffer.concat(Array.from({ length: 4096 }, () => Buffer.from([0x82, 0x81, 1, 2, 3, 4, 1 ^ 1])));
  let flooding = true;
  void (async () => {
    // As fast as the connection takes them, and no faster: nothing piles up on this side either,
    // so the flood costs this process (which also measures the neighbour) next to nothing.
    while (flooding && !raw.destroyed) {
      if (raw.write(frames)) continue;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          raw.off('drain', done);
          resolve();
        };
        const timer = setTimeout(done, 1_000);
        raw.once('drain', done);
      });
      while (flooding && !raw.destroyed && raw.writableLength > 0) await sleep(20);
    }
  })();
  await sleep(s.floodMs);
  flooding = false;
  const during = live.take();
  await phase('end');
  raw.destroy();
  live.stop();
  return { acks: during.count, elapsedMs: s.floodMs, before, during, errors: 0 };
}

const scenario = JSON.parse(process.argv[2] ?? '{}') as Scenario;
const result =
  scenario.kind === 'saturate'
    ? await saturate(scenario)
    : scenario.kind === 'paced'
      ? await paced(scenario)
      : scenario.kind === 'massClose'
        ? await massClose(scenario)
        : await flood(scenario);
process.send?.({ result }, () => process.exit(0));
