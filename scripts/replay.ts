/**
 * `npm run replay -- <video | folder of JPEGs> [--url U] [--fps N] [--magic-word W] [--loop]`
 * `npm run replay -- --synthetic [--frames N] [--size WxH]`
 *
 * Streams frames to a running server like the glasses do, prints captions and
 * errors as they arrive, then a summary (frames, captions, ack p50/p99,
 * inference errors). Videos are cut into JPEGs with ffmpeg.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { WebSocket } from 'ws';
import { cleanCaption } from '../src/adapters/inference.ts';
import { syntheticJpegFrames } from './synthetic-frames.ts';

export interface ReplayOptions {
  url: string;
  fps: number;
  magicWord?: string;
  loop?: boolean;
  /** The frames to send, in order. */
  frames: Uint8Array[];
  write: (line: string) => void;
  /** Stops a looping replay. */
  signal?: AbortSignal;
}

export interface ReplaySummary {
  frames: number;
  acks: number;
  captions: number;
  inferenceErrors: number;
  ackP50Ms: number;
  ackP99Ms: number;
}

interface Ack {
  frame?: number;
  caption?: string;
  inference_error?: string;
  window_id?: string;
  chunk_start_s?: number;
  chunk_end_s?: number;
  latency_ms?: number;
  error?: string;
}

const percentile = (sorted: number[], p: number) =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

/** Streams `frames` at `fps` and resolves once every frame sent has its ack. */
export async function replay(options: ReplayOptions): Promise<ReplaySummary> {
  const { write } = options;
  const wsUrl = `${options.url.replace(/^http/, 'ws').replace(/\/$/, '')}/vision/stream`;
  const ws = new WebSocket(wsUrl, {
    perMessageDeflate: false,
    ...(options.magicWord ? { headers: { 'x-magic-word': options.magicWord } } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`server refused the stream: HTTP ${res.statusCode}`)));
  });

  const sentAt: number[] = [];
  const latencies: number[] = [];
  const summary: ReplaySummary = { frames: 0, acks: 0, captions: 0, inferenceErrors: 0, ackP50Ms: 0, ackP99Ms: 0 };
  const started = performance.now();
  let closed = false;
  let wake: (() => void) | undefined;

  ws.on('message', (data) => {
    const ack = JSON.parse(String(data)) as Ack;
    if (ack.error) {
      write(`server: ${ack.error}`);
      return;
    }
    const sent = sentAt.shift();
    if (sent !== undefined) latencies.push(performance.now() - sent);
    summary.acks += 1;
    const at = ((performance.now() - started) / 1000).toFixed(1);
    if (ack.caption !== undefined) {
      summary.captions += 1;
      write(`[${at}s] ${ack.window_id} (${ack.chunk_start_s?.toFixed(1)}–${ack.chunk_end_s?.toFixed(1)} s, ${ack.latency_ms} ms): ${cleanCaption(ack.caption)}`);
    }
    if (ack.inference_error !== undefined) {
      summary.inferenceErrors += 1;
      write(`[${at}s] inference error: ${cleanCaption(ack.inference_error)}`);
    }
    wake?.();
  });
  ws.on('close', (code, reason) => {
    closed = true;
    if (summary.acks < summary.frames) write(`stream closed by the server: ${code} ${String(reason)}`);
    wake?.();
  });

  const periodMs = 1000 / options.fps;
  let next = performance.now();
  do {
    for (const frame of options.frames) {
      if (closed || options.signal?.aborted) break;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      next += periodMs;
      sentAt.push(performance.now());
      ws.send(frame);
      summary.frames += 1;
    }
  } while (options.loop && !closed && !options.signal?.aborted);

  while (!closed && summary.acks < summary.frames) await new Promise<void>((r) => (wake = r));
  ws.close();
  latencies.sort((a, b) => a - b);
  summary.ackP50Ms = percentile(latencies, 0.5);
  summary.ackP99Ms = percentile(latencies, 0.99);
  write(
    `frames ${summary.frames} · acks ${summary.acks} · captions ${summary.captions} · inference errors ${summary.inferenceErrors} · ack p50 ${summary.ackP50Ms.toFixed(2)} ms · p99 ${summary.ackP99Ms.toFixed(2)} ms`,
  );
  return summary;
}

const IMAGE = new Set(['.jpg', '.jpeg', '.png']);

/** The image files of a folder, by name. */
export function framesFromFolder(dir: string): Uint8Array[] {
  return readdirSync(dir)
    .filter((name) => IMAGE.has(extname(name).toLowerCase()))
    .sort()
    .map((name) => readFileSync(join(dir, name)));
}

/** Cuts a video into JPEG frames at `fps` with ffmpeg. */
export function framesFromVideo(file: string, fps: number): Uint8Array[] {
  const probe = spawnSync('ffmpeg', ['-version'], { stdio: 'ignore' });
  if (probe.error) {
    throw new Error('ffmpeg is needed to read a video: install it (Debian: apt-get install ffmpeg) or pass a folder of JPEGs');
  }
  const dir = mkdtempSync(join(tmpdir(), 'foresight-replay-'));
  try {
    const cut = spawnSync('ffmpeg', ['-loglevel', 'error', '-i', file, '-vf', `fps=${fps}`, '-q:v', '5', join(dir, 'frame_%06d.jpg')], {
      encoding: 'utf8',
    });
    if (cut.status !== 0) throw new Error(`ffmpeg could not read ${file}: ${cut.stderr.trim()}`);
    return framesFromFolder(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function parseArgs(argv: string[]) {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) positional.push(arg);
    else if (['--loop', '--synthetic'].includes(arg)) flags.set(arg, true);
    else flags.set(arg, argv[++i] ?? '');
  }
  return { flags, positional };
}

async function main(): Promise<void> {
  const { flags, positional } = parseArgs(process.argv.slice(2));
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const fps = Number(flags.get('--fps') ?? 15);
  if (!Number.isFinite(fps) || fps <= 0) throw new Error('--fps must be a positive number');
  let frames: Uint8Array[];
  if (flags.has('--synthetic')) {
    const count = Number(flags.get('--frames') ?? 150);
    const size = /^(\d{1,5})x(\d{1,5})$/.exec(String(flags.get('--size') ?? '320x240'));
    if (!Number.isInteger(count) || count < 1 || count > 100_000) throw new Error('--frames must be a whole number from 1 to 100000');
    if (!size || Number(size[1]) < 8 || Number(size[2]) < 8) throw new Error('--size must be WIDTHxHEIGHT, each at least 8, e.g. 320x240');
    // Real JPEGs of a made-up scene: a vision model can caption them.
    frames = syntheticJpegFrames(count, { width: Number(size[1]), height: Number(size[2]) });
  } else {
    const source = positional[0];
    if (!source) throw new Error('usage: npm run replay -- <video | folder of JPEGs> [--url U] [--fps N] [--magic-word W] [--loop] | --synthetic');
    if (!existsSync(source)) throw new Error(`no such file or folder: ${source}`);
    frames = statSync(source).isDirectory() ? framesFromFolder(source) : framesFromVideo(source, fps);
    if (frames.length === 0) throw new Error(`no frames in ${source}`);
  }
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  const url = String(flags.get('--url') ?? `http://127.0.0.1:${process.env.PORT ?? 8080}`);
  const magicWord = flags.get('--magic-word') ?? process.env.MAGIC_WORD;
  out(`streaming ${frames.length} frames to ${url} at ${fps} fps${flags.has('--loop') ? ', looping (Ctrl-C stops)' : ''}`);
  await replay({
    url,
    fps,
    frames,
    write: out,
    loop: flags.has('--loop'),
    signal: stop.signal,
    ...(typeof magicWord === 'string' ? { magicWord } : {}),
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
