/**
 * `npm run bench`: this server (production build, fixed-latency fake inference)
 * against a bare `ws` ack server, measured in the same run with the same load
 * generator. Servers are pinned to one core, the load generator to another.
 *
 *   --rounds N   repeats of (a), (b) and (c) per server, alternating the order (medians are reported); default 3
 *   --quick      shorter runs, for a smoke check
 *   --only abcdef  run only the named scenarios (default all)
 *   --warmup S   seconds of load before (b) and (c) start measuring; default 2.
 *                Longer runs measure a server whose JIT has settled.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SERVER_NODE_FLAGS } from '../src/node-flags.ts';
import type { LoadResult, Scenario } from './load.ts';

type ServerKind = 'foresight' | 'bare';
const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const quick = args.includes('--quick');
const roundsArg = args.indexOf('--rounds');
const rounds = roundsArg >= 0 ? Number(args[roundsArg + 1]) : undefined;
const onlyArg = args.indexOf('--only');
const only = onlyArg >= 0 ? (args[onlyArg + 1] ?? '') : 'abcdef';
const warmupArg = args.indexOf('--warmup');
const pacedWarmupMs = warmupArg >= 0 ? Number(args[warmupArg + 1]) * 1000 : 2_000;
if (!Number.isFinite(pacedWarmupMs) || pacedWarmupMs < 0) throw new Error('--warmup takes a number of seconds');
const pin = existsSync('/usr/bin/taskset') || existsSync('/bin/taskset');
const CLK_TCK = 100;
const KiB = 1024;

function forkPinned(script: string, argv: string[], core: number, execArgv: string[] = [], env: Record<string, string> = {}): ChildProcess {
  const modulePath = join(here, script);
  const options = { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] as const, env: { ...process.env, ...env } };
  if (!pin) return fork(modulePath, argv, { execArgv, ...options, stdio: [...options.stdio] });
  // taskset execs node; fork's IPC channel survives the exec.
  return fork(modulePath, argv, {
    execPath: 'taskset',
    execArgv: ['-c', String(core), process.execPath, ...execArgv],
    ...options,
    stdio: [...options.stdio],
  });
}

function nextMessage<T>(child: ChildProcess, pick: (m: Record<string, unknown>) => T | undefined): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown) => {
      const value = pick(m as Record<string, unknown>);
      if (value !== undefined) {
        child.off('message', onMessage);
        child.off('exit', onExit);
        resolve(value);
      }
    };
    const onExit = (code: number | null) => reject(new Error(`child exited (${code}) while waiting`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

interface Memory {
  /** Event-loop delay (ms) since the measurement window opened. */
  loop: { p50: number; p99: number; max: number };
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  spaces: Record<string, number>;
  chunkStats: { chunks: number; frames: number; bytes: number; framesSeen: number };
}

class ServerProcess {
  readonly child: ChildProcess;
  readonly url: string;

  private constructor(child: ChildProcess, url: string) {
    this.child = child;
    this.url = url;
  }

  static async start(kind: ServerKind, env: Record<string, string> = {}): Promise<ServerProcess> {
    const words = (v: string | undefined) => v?.split(' ').filter(Boolean) ?? [];
    // BENCH_SERVER_ARGS: Node flags for both servers; BENCH_FORESIGHT_ARGS: for this server only.
    // This server runs with its production flags; the bare one with Node's defaults.
    const own = kind === 'foresight' ? [...SERVER_NODE_FLAGS, ...words(process.env.BENCH_FORESIGHT_ARGS)] : ['--disable-warning=ExperimentalWarning'];
    const child = forkPinned('servers.js', [kind], 1, ['--expose-gc', ...own, ...words(process.env.BENCH_SERVER_ARGS)], env);
    const url = await nextMessage(child, (m) => (typeof m.ready === 'string' ? m.ready : undefined));
    return new ServerProcess(child, url);
  }

  /** CPU seconds used so far, in user space and in the kernel (utime and stime). */
  cpuSeconds(): { user: number; system: number } {
    const stat = readFileSync(`/proc/${this.child.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { user: Number(fields[11]) / CLK_TCK, system: Number(fields[12]) / CLK_TCK };
  }

  async memory(): Promise<Memory> {
    const reply = nextMessage(this.child, (m) => (typeof m.rss === 'number' ? (m as unknown as Memory) : undefined));
    this.child.send('gc');
    return reply;
  }

  /** Ends the server; a normal exit lets `--cpu-prof` and friends write their files. */
  async stop(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.disconnect();
    const kill = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(kill);
  }
}

interface Measured {
  result: LoadResult;
  cpuPercent: number;
  /** The share of `cpuPercent` spent in user space (the rest is the kernel's socket work and such). */
  userCpuPercent: number;
  memoryPerSessionKiB: number;
  memory: Memory;
  /** At the `start` phase (after a full collection), before the loop-delay window opens. */
  atStart: Memory | undefined;
}

/**
 * Runs one scenario against a fresh server process and measures it. `env`
 * goes to the server (the flood scenario runs it with the default rate limits).
 */
async function measure(kind: ServerKind, scenario: (url: string) => Scenario, sessions: number, env: Record<string, string> = {}): Promise<Measured> {
  const server = await ServerProcess.start(kind, env);
  try {
    const baseline = await server.memory();
    const planned = scenario(server.url);
    const scenarioKind = planned.kind;
    const load = forkPinned('load.js', [JSON.stringify(planned)], 0);
    let cpuStart = { user: 0, system: 0 };
    let wallStart = 0;
    let cpuPercent = 0;
    let userCpuPercent = 0;
    let loaded: Memory | undefined;
    let atStart: Memory | undefined;
    load.on('message', (m: { phase?: string }) => {
      if (m.phase === undefined) return;
      void (async () => {
        if (m.phase === 'start') {
          // A full collection here would land in the measured window of the other scenarios.
          if (scenarioKind === 'flood') atStart = await server.memory();
          server.child.send('loop-reset');
          cpuStart = server.cpuSeconds();
          wallStart = performance.now();
        } else if (m.phase === 'end') {
          const used = server.cpuSeconds();
          const seconds = (performance.now() - wallStart) / 1000;
          cpuPercent = ((used.user + used.system - cpuStart.user - cpuStart.system) / seconds) * 100;
          userCpuPercent = ((used.user - cpuStart.user) / seconds) * 100;
          loaded = await server.memory();
        }
        load.send({ go: m.phase });
      })();
    });
    const result = await nextMessage(load, (m) => (m.result ? (m.result as LoadResult) : undefined));
    const memory = loaded ?? baseline;
    if (process.env.BENCH_DEBUG) log(`${kind} baseline ${JSON.stringify(baseline)}\n${kind} loaded ${JSON.stringify(memory)}`);
    return {
      result,
      cpuPercent,
      userCpuPercent,
      memory,
      atStart,
      memoryPerSessionKiB: (memory.rss - baseline.rss) / sessions / KiB,
    };
  } finally {
    await server.stop();
  }
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

async function rounds_<T>(n: number, run: (kind: ServerKind) => Promise<T>): Promise<Record<ServerKind, T[]>> {
  const out: Record<ServerKind, T[]> = { foresight: [], bare: [] };
  for (let i = 0; i < n; i++) {
    // Alternate the order so drift on the machine hits both servers alike.
    const order: ServerKind[] = i % 2 === 0 ? ['bare', 'foresight'] : ['foresight', 'bare'];
    for (const kind of order) out[kind].push(await run(kind));
  }
  return out;
}

interface Row {
  metric: string;
  foresight: number;
  bare: number;
  unit: string;
  goal: string;
  pass: boolean;
}

const rows: Row[] = [];
const fmt = (n: number) => (Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(2));
const log = (text: string) => process.stdout.write(`${text}\n`);

// (a) one session saturating: 40 KiB frames, 8 unacked in flight.
if (only.includes('a')) {
  const durationMs = quick ? 2_000 : 4_000;
  const a = await rounds_(rounds ?? 3, (kind) =>
    measure(
      kind,
      (url) => ({ kind: 'saturate', url, frameBytes: 40 * KiB, inFlight: 8, warmupMs: 1_000, durationMs }),
      1,
    ),
  );
  const rate = (m: Measured) => m.result.acks / (m.result.elapsedMs / 1000);
  const f = median(a.foresight.map(rate));
  const b = median(a.bare.map(rate));
  rows.push({ metric: '(a) 1 session saturating, acks/s', foresight: f, bare: b, unit: 'acks/s', goal: '≥ 0.8 × bare', pass: f >= 0.8 * b });
  log(`(a) done: ${fmt(f)} vs ${fmt(b)} acks/s`);
}

// (b) 200 sessions × 15 fps × 40 KiB for 15 s.
if (only.includes('b')) {
  const durationMs = quick ? 4_000 : 15_000;
  const b = await rounds_(rounds ?? 3, (kind) =>
    measure(
      kind,
      (url) => ({ kind: 'paced', url, sessions: 200, fps: 15, frameBytes: 40 * KiB, warmupMs: pacedWarmupMs, durationMs }),
      200,
    ),
  );
  const p50 = (m: Measured) => m.result.latenciesMs!.p50;
  const p99 = (m: Measured) => m.result.latenciesMs!.p99;
  const cpu = (m: Measured) => m.cpuPercent;
  const mem = (m: Measured) => m.memoryPerSessionKiB;
  const fp99 = median(b.foresight.map(p99));
  const bp99 = median(b.bare.map(p99));
  const fcpu = median(b.foresight.map(cpu));
  const bcpu = median(b.bare.map(cpu));
  const fmem = median(b.foresight.map(mem));
  rows.push({ metric: '(b) 200×15 fps×40 KiB, ack p50', foresight: median(b.foresight.map(p50)), bare: median(b.bare.map(p50)), unit: 'ms', goal: '—', pass: true });
  rows.push({ metric: '(b) ack p99', foresight: fp99, bare: bp99, unit: 'ms', goal: '≤ 2 × bare', pass: fp99 <= 2 * bp99 });
  const loop99 = (m: Measured) => m.memory.loop.p99;
  rows.push({ metric: '(b) server event-loop delay p99', foresight: median(b.foresight.map(loop99)), bare: median(b.bare.map(loop99)), unit: 'ms', goal: '—', pass: true });
  rows.push({ metric: '(b) server CPU', foresight: fcpu, bare: bcpu, unit: '% of a core', goal: '≤ 1.5 × bare', pass: fcpu <= 1.5 * bcpu });
  const userCpu = (m: Measured) => m.userCpuPercent;
  rows.push({ metric: '(b) server CPU in user space', foresight: median(b.foresight.map(userCpu)), bare: median(b.bare.map(userCpu)), unit: '% of a core', goal: '—', pass: true });
  rows.push({ metric: '(b) memory per session', foresight: fmem, bare: median(b.bare.map(mem)), unit: 'KiB', goal: '≤ 600 KiB', pass: fmem <= 600 });
  const acked = (m: Measured) => m.result.acks;
  rows.push({ metric: '(b) acks in the window', foresight: median(b.foresight.map(acked)), bare: median(b.bare.map(acked)), unit: 'acks', goal: '—', pass: true });
  // Caption latency (this server only): a window's latest frame → the ack with its caption.
  const inferenceMs = Number(process.env.BENCH_INFERENCE_MS ?? 300);
  const spanMs = 1_000;
  const capP50 = median(b.foresight.map((m) => m.result.captionLatenciesMs!.p50));
  const capP99 = median(b.foresight.map((m) => m.result.captionLatenciesMs!.p99));
  const captionGoal = inferenceMs + spanMs + 100;
  rows.push({ metric: `(b) caption latency p50 (model ${inferenceMs} ms)`, foresight: capP50, bare: Number.NaN, unit: 'ms', goal: '—', pass: true });
  rows.push({
    metric: `(b) caption latency p99 (model ${inferenceMs} ms)`,
    foresight: capP99,
    bare: Number.NaN,
    unit: 'ms',
    goal: `≤ ${captionGoal} ms (model + window span + 100)`,
    pass: capP99 <= captionGoal,
  });
  log(`(b) captions timed: ${b.foresight.map((m) => m.result.captionLatenciesMs!.count).join(', ')} a round; p50 ${fmt(capP50)} ms, p99 ${fmt(capP99)} ms against a model at ${inferenceMs} ms`);
  const stats = b.foresight.at(-1)!.memory.chunkStats;
  if (stats.chunks > 0) {
    log(`(b) chunks to inference: ${stats.chunks}, ${fmt(stats.frames / stats.chunks)} frames and ${fmt(stats.bytes / stats.chunks / KiB)} KiB per chunk, sampled from ${fmt(stats.framesSeen / stats.chunks)} frames seen`);
  }
  log('(b) done');
}

// (c) 1000 sessions at 1 fps × 2 KiB.
if (only.includes('c')) {
  const durationMs = quick ? 3_000 : 8_000;
  const c = await rounds_(rounds ?? 3, (kind) =>
    measure(
      kind,
      (url) => ({ kind: 'paced', url, sessions: 1000, fps: 1, frameBytes: 2 * KiB, warmupMs: pacedWarmupMs, durationMs }),
      1000,
    ),
  );
  const f = median(c.foresight.map((m) => m.memoryPerSessionKiB));
  const b = median(c.bare.map((m) => m.memoryPerSessionKiB));
  rows.push({ metric: '(c) 1000×1 fps×2 KiB, memory per session', foresight: f, bare: b, unit: 'KiB', goal: '≤ 48 KiB', pass: f <= 48 });
  log('(c) done');
}

// (d) what reaches the model: 30 fps × 40 KiB with VISION_FRAMES_PER_CHUNK=6, against sending every frame.
if (only.includes('d')) {
  const sessions = 20;
  const d = await measure(
    'foresight',
    (url) => ({ kind: 'paced', url, sessions, fps: 30, frameBytes: 40 * KiB, warmupMs: 1_000, durationMs: quick ? 3_000 : 8_000 }),
    sessions,
  );
  const stats = d.memory.chunkStats;
  const framesPerChunk = stats.frames / stats.chunks;
  const sampledPerChunk = stats.bytes / stats.chunks;
  // The usual design hands the model every frame of the window.
  const everyPerChunk = (stats.framesSeen / stats.chunks) * 40 * KiB;
  log(`(d) ${stats.chunks} chunks from ${sessions} sessions at 30 fps: ${fmt(framesPerChunk)} of ${fmt(stats.framesSeen / stats.chunks)} frames per chunk`);
  rows.push({ metric: '(d) 30 fps×40 KiB, frames per chunk to inference', foresight: framesPerChunk, bare: stats.framesSeen / stats.chunks, unit: 'frames', goal: '≤ 6 (bare column: every frame)', pass: framesPerChunk <= 6 });
  rows.push({ metric: '(d) bytes per chunk to inference', foresight: sampledPerChunk / KiB, bare: everyPerChunk / KiB, unit: 'KiB', goal: '≈ 1/5 of every frame', pass: sampledPerChunk * 4 <= everyPerChunk });
  log('(d) done');
}

// (e) mass close: 5000 sessions closed at once while a live session streams.
if (only.includes('e')) {
  const sessions = quick ? 1000 : 5000;
  const e = await rounds_(rounds ?? 3, (kind) =>
    measure(kind, (url) => ({ kind: 'massClose', url, sessions, warmupMs: quick ? 1_000 : 3_000, beforeMs: 2_000, afterMs: 3_000 }), sessions),
  );
  const stall = (m: Measured) => m.memory.loop.max;
  const p99 = (m: Measured) => m.result.during!.p99;
  const fStall = median(e.foresight.map(stall));
  rows.push({ metric: `(e) ${sessions} sessions closed at once, longest event-loop stall`, foresight: fStall, bare: median(e.bare.map(stall)), unit: 'ms', goal: '≤ 100 ms', pass: fStall <= 100 });
  rows.push({ metric: '(e) live session ack p99 while they close', foresight: median(e.foresight.map(p99)), bare: median(e.bare.map(p99)), unit: 'ms', goal: '—', pass: true });
  rows.push({ metric: '(e) live session ack p99 before', foresight: median(e.foresight.map((m) => m.result.before!.p99)), bare: median(e.bare.map((m) => m.result.before!.p99)), unit: 'ms', goal: '—', pass: true });
  rows.push({ metric: '(e) all closed on the client side after', foresight: median(e.foresight.map((m) => m.result.closedMs!)), bare: median(e.bare.map((m) => m.result.closedMs!)), unit: 'ms', goal: '—', pass: true });
  log('(e) done');
}

// (f) flood: one client sending 1-byte frames without reading, next to a 30 fps neighbour.
// This server runs with its default rate limits here.
if (only.includes('f')) {
  const f = await rounds_(rounds ?? 3, (kind) =>
    measure(kind, (url) => ({ kind: 'flood', url, warmupMs: 1_000, aloneMs: quick ? 3_000 : 8_000, floodMs: quick ? 3_000 : 8_000 }), 1, {
      BENCH_RATE_LIMITS: 'default',
    }),
  );
  const growthMiB = (m: Measured) => (m.memory.rss - (m.atStart?.rss ?? m.memory.rss)) / KiB / KiB;
  const fGrowth = median(f.foresight.map(growthMiB));
  rows.push({ metric: '(f) flood: server RSS growth', foresight: fGrowth, bare: median(f.bare.map(growthMiB)), unit: 'MiB', goal: '≤ 8 MiB', pass: fGrowth <= 8 });
  const alone = median(f.foresight.map((m) => m.result.before!.p99));
  const during = median(f.foresight.map((m) => m.result.during!.p99));
  rows.push({ metric: '(f) neighbour ack p99 alone', foresight: alone, bare: median(f.bare.map((m) => m.result.before!.p99)), unit: 'ms', goal: '—', pass: true });
  rows.push({ metric: '(f) neighbour ack p99 next to the flood', foresight: during, bare: median(f.bare.map((m) => m.result.during!.p99)), unit: 'ms', goal: '≤ 2 × alone', pass: during <= 2 * alone });
  log('(f) done');
}

log('');
log(`pinned: ${pin ? 'server on core 1, load generator on core 0' : 'no (taskset not found)'}; node ${process.version}`);
log('| metric | foresight | bare ws | ratio | goal | met |');
log('|---|---:|---:|---:|---|---|');
for (const r of rows) {
  const bare = Number.isNaN(r.bare) ? '— (no captions)' : `${fmt(r.bare)} ${r.unit}`;
  log(`| ${r.metric} | ${fmt(r.foresight)} ${r.unit} | ${bare} | ${r.bare ? fmt(r.foresight / r.bare) : '—'} | ${r.goal} | ${r.pass ? 'yes' : 'NO'} |`);
}
