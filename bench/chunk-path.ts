/**
 * `npm run bench:chunk`: what one chunk costs in the session actors, without
 * sockets. 200 sessions under one supervisor each take chunks one after the
 * other (one frame a chunk, windows due at once) from the benchmark's fake
 * model with no latency; V8's sampling heap profiler, keeping the samples of
 * collected objects, counts the bytes allocated. Prints microseconds and KiB
 * allocated a chunk.
 *
 *   node dist/bench/chunk-path.js [chunks]   (default 20000)
 */
import { Session } from 'node:inspector/promises';
import { Subject } from 'rxjs';
import { createActor } from 'xstate';
import { loadConfig } from '../src/config.ts';
import { sessionActors, sessionMachine } from '../src/machines/session.ts';
import { sessionSystemId, supervisorWith, type SessionRef } from '../src/machines/supervisor.ts';
import { TurnQueue } from '../src/streams/turns.ts';
import { fixedLatencyInference } from './fixed-latency-inference.ts';

const SESSIONS = 200;
const chunks = Number(process.argv[2] ?? 20_000);

// The benchmark's fake model, answering on the next timer tick.
const model = fixedLatencyInference(0, { chunks: 0, frames: 0, bytes: 0, framesSeen: 0 });

const config = loadConfig({ ...process.env, DATABASE_PATH: ':memory:' });
const vision = { ...config.vision, chunkMs: 0 };
const supervisor = createActor(
  supervisorWith({ session: sessionMachine.provide({ actors: sessionActors(model, new TurnQueue().defer) }) }),
  { input: { ticker: { enabled: false, periodMs: 60_000, nudgeCooldownMs: 0 } } },
).start();

interface Driven {
  frames: Subject<Uint8Array>;
  answered: () => Promise<void>;
}

const sessions: Driven[] = [];
for (let i = 0; i < SESSIONS; i++) {
  const frames = new Subject<Uint8Array>();
  supervisor.send({ type: 'session.open', input: { sessionId: `s${i}`, frames, vision } });
  const session = supervisor.system.get(sessionSystemId(`s${i}`)) as SessionRef;
  await new Promise<void>((resolve) => {
    const ready = session.on('inference.ready', () => {
      ready.unsubscribe();
      resolve();
    });
  });
  let wake: (() => void) | null = null;
  session.on('inference.outcome', () => {
    const resolve = wake;
    wake = null;
    resolve?.();
  });
  sessions.push({ frames, answered: () => new Promise<void>((resolve) => (wake = resolve)) });
}

const frame = new Uint8Array(1024);
async function run(total: number): Promise<void> {
  for (let round = 0; round < total / SESSIONS; round++) {
    await Promise.all(
      sessions.map((s) => {
        const answered = s.answered();
        s.frames.next(frame);
        return answered;
      }),
    );
  }
}

await run(2_000); // warm up
const profiler = new Session();
profiler.connect();
await profiler.post('HeapProfiler.startSampling', {
  samplingInterval: 1024,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
});
const started = performance.now();
await run(chunks);
const elapsed = performance.now() - started;
const { profile } = await profiler.post('HeapProfiler.stopSampling');
interface Node {
  selfSize: number;
  children: Node[];
}
const total = (node: Node): number => node.children.reduce((sum, child) => sum + total(child), node.selfSize);
const bytes = total(profile.head as Node);
process.stdout.write(
  `${chunks} chunks over ${SESSIONS} sessions: ${((elapsed * 1000) / chunks).toFixed(1)} µs and ` +
    `${(bytes / chunks / 1024).toFixed(1)} KiB allocated a chunk (the heap profiler slows the first figure)\n`,
);
supervisor.stop();
process.exit(0);
