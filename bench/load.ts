/**
 * Load generator, run as its own process (pinned to its own core by the
 * runner). Reads a scenario from argv, reports phases and results over IPC.
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { WebSocket } from 'ws';

export type Scenario =
  | { kind: 'saturate'; url: string; frameBytes: number; inFlight: number; warmupMs: number; durationMs: number }
  | { kind: 'paced'; url: string; sessions: number; fps: number; frameBytes: number; warmupMs: number; durationMs: number };

export interface LoadResult {
  acks: number;
  elapsedMs: number;
  latenciesMs?: { p50: number; p99: number; count: number };
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
  const payload = randomBytes(s.frameBytes);
  const sockets: WebSocket[] = [];
  for (let i = 0; i < s.sessions; i += 50) {
    sockets.push(...(await Promise.all(Array.from({ length: Math.min(50, s.sessions - i) }, () => connect(s.url)))));
  }
  await phase('connected');
  const periodMs = 1000 / s.fps;
  const capacity = Math.ceil((s.sessions * s.fps * (s.warmupMs + s.durationMs + 5_000)) / 1000);
  const latencies = new Float64Array(capacity);
  let count = 0;
  let acks = 0;
  let errors = 0;
  let measuring = false;
  const timers: NodeJS.Timeout[] = [];
  for (const [i, ws] of sockets.entries()) {
    const sentAt: number[] = [];
    ws.on('message', (data: Buffer) => {
      const sent = sentAt.shift();
      if (sent === undefined || data[2] !== 0x66) {
        errors += 1;
        return;
      }
      if (measuring) {
        acks += 1;
        if (count < capacity) latencies[count++] = performance.now() - sent;
      }
    });
    const send = () => {
      sentAt.push(performance.now());
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
  return {
    acks,
    elapsedMs,
    errors,
    latenciesMs: { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), count },
  };
}

const scenario = JSON.parse(process.argv[2] ?? '{}') as Scenario;
const result = scenario.kind === 'saturate' ? await saturate(scenario) : await paced(scenario);
process.send?.({ result }, () => process.exit(0));
