import { NEVER } from 'rxjs';
import { describe, expect, it } from 'vitest';
import { createActor, SimulatedClock, waitFor } from 'xstate';
import type { FrameChunk, InferencePort } from '../../src/adapters/inference.ts';
import { sessionActors, sessionMachine, type AckFields, type SessionInput } from '../../src/machines/session.ts';
import { ok } from '../../src/result.ts';
import { copyFrame, framePool } from '../../src/streams/frame-copies.ts';
import { FakeInference } from '../fakes/inference.ts';

const vision = {
  chunkMs: 1_000,
  framesPerChunk: 6,
  maxBufferFrames: 120,
  maxInferenceFailures: 3,
  inferenceTimeoutMs: 30_000,
  degradedCooldownMs: 30_000,
  prompt: 'describe',
};

const input = (overrides: Partial<SessionInput['vision']> = {}): SessionInput => ({
  sessionId: 's1',
  frames: NEVER,
  vision: { ...vision, ...overrides },
});

const chunk = (index: number): FrameChunk => ({
  index,
  windowId: `s1-${index}`,
  frames: [copyFrame(Uint8Array.of(index))],
  startS: index,
  endS: index + 0.5,
  framesSeen: 1,
});

function run(inference: InferencePort, overrides: Partial<SessionInput['vision']> = {}) {
  const clock = new SimulatedClock();
  const actor = createActor(sessionMachine.provide({ actors: sessionActors(inference) }), {
    input: input(overrides),
    clock,
  });
  const outcomes: AckFields[] = [];
  const closes: Array<{ code: number; reason: string }> = [];
  let readyCount = 0;
  actor.on('inference.outcome', (e) => outcomes.push(e.fields));
  actor.on('session.close', (e) => closes.push({ code: e.code, reason: e.reason }));
  actor.on('inference.ready', () => (readyCount += 1));
  actor.start();
  return { actor, clock, outcomes, closes, ready: () => readyCount };
}

const failing = () => new FakeInference({ auto: () => ({ kind: 'remote', message: 'gpu on fire' }) });
const inferenceState = (actor: { getSnapshot(): { value: unknown } }) =>
  (actor.getSnapshot().value as { active: { inference: string } }).active.inference;

describe('session machine (SPEC §5)', () => {
  it('opens the inference session, then waits idle and announces it is ready', async () => {
    const inference = new FakeInference();
    const { actor, ready } = run(inference);
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    expect(inference.opened).toEqual(['s1']);
    expect(ready()).toBe(1);
    actor.stop();
  });

  it('backs off after an error, opens the circuit after N consecutive failures, retries after the cooldown', async () => {
    const { actor, clock, outcomes } = run(failing(), { maxInferenceFailures: 3 });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    for (let i = 0; i < 2; i++) {
      actor.send({ type: 'window.ready', chunk: chunk(i) });
      await waitFor(actor, (s) => s.matches({ active: { inference: 'backoff' } }));
      expect(actor.getSnapshot().context.failures).toBe(i + 1);
      clock.increment(1_000);
      expect(inferenceState(actor)).toBe('idle');
    }
    actor.send({ type: 'window.ready', chunk: chunk(2) });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'degraded' } }));
    expect(actor.getSnapshot().context.degradedReason).toBe('circuit-open');
    expect(outcomes).toEqual([0, 1, 2].map((i) => ({
      inference_error: 'gpu on fire',
      window_id: `s1-${i}`,
      chunk_start_s: i,
      chunk_end_s: i + 0.5,
    })));
    clock.increment(29_999);
    expect(inferenceState(actor)).toBe('degraded');
    clock.increment(1);
    expect(inferenceState(actor)).toBe('idle');
    expect(actor.getSnapshot().context.degradedReason).toBeNull();
    expect(actor.getSnapshot().context.failures).toBe(0);
    actor.stop();
  });

  it('counts only consecutive failures: a caption resets the count', async () => {
    let call = 0;
    const inference = new FakeInference({ auto: () => (++call % 2 === 1 ? { kind: 'remote', message: 'x' } : undefined) });
    const { actor, clock } = run(inference, { maxInferenceFailures: 2 });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    for (let i = 0; i < 6; i++) {
      actor.send({ type: 'window.ready', chunk: chunk(i) });
      await waitFor(actor, (s) => !s.matches({ active: { inference: 'inferring' } }));
      expect(inferenceState(actor)).not.toBe('degraded');
      clock.increment(1_000);
    }
    actor.stop();
  });

  it('times out a slow inference, aborts it and reports inference_error', async () => {
    const inference = new FakeInference();
    const { actor, clock, outcomes } = run(inference, { inferenceTimeoutMs: 5_000 });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    actor.send({ type: 'window.ready', chunk: chunk(0) });
    await inference.until(() => inference.calls.length === 1);
    clock.increment(5_000);
    expect(inferenceState(actor)).toBe('backoff');
    expect(inference.calls[0]!.signal.aborted).toBe(true);
    expect(outcomes).toEqual([{ inference_error: 'inference timed out', window_id: 's1-0', chunk_start_s: 0, chunk_end_s: 0.5 }]);
    actor.stop();
  });

  it('gives the call after a timed-out one a signal that is not aborted', async () => {
    const inference = new FakeInference();
    const { actor, clock } = run(inference, { inferenceTimeoutMs: 5_000 });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    actor.send({ type: 'window.ready', chunk: chunk(0) });
    await inference.until(() => inference.calls.length === 1);
    inference.calls[0]!.resolve(ok(FakeInference.caption(chunk(0))));
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    actor.send({ type: 'window.ready', chunk: chunk(1) });
    await inference.until(() => inference.calls.length === 2);
    clock.increment(5_000); // times out, aborting the second call's signal
    clock.increment(1_000); // backoff over
    expect(inferenceState(actor)).toBe('idle');
    actor.send({ type: 'window.ready', chunk: chunk(2) });
    await inference.until(() => inference.calls.length === 3);
    expect(inference.calls[1]!.signal.aborted).toBe(true);
    expect(inference.calls[2]!.signal.aborted).toBe(false);
    actor.stop();
  });

  it('returns the frames of an answered chunk to the pool, and leaves those of an abandoned one to the collector', async () => {
    const inference = new FakeInference();
    const { actor, clock } = run(inference, { inferenceTimeoutMs: 5_000 });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    const answered = chunk(0);
    actor.send({ type: 'window.ready', chunk: answered });
    await inference.until(() => inference.calls.length === 1);
    expect(framePool.holds(answered.frames[0]!)).toBe(false);
    inference.calls[0]!.resolve(ok(FakeInference.caption(answered)));
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    expect(framePool.holds(answered.frames[0]!)).toBe(true);

    // Timed out and aborted: the model may still be reading, so the frames stay as they are, even after a late answer.
    const abandoned = chunk(1);
    actor.send({ type: 'window.ready', chunk: abandoned });
    await inference.until(() => inference.calls.length === 2);
    clock.increment(5_000);
    expect(inference.calls[1]!.signal.aborted).toBe(true);
    inference.calls[1]!.resolve(ok(FakeInference.caption(abandoned)));
    await new Promise((resolve) => setImmediate(resolve));
    expect(framePool.holds(abandoned.frames[0]!)).toBe(false);
    expect([...abandoned.frames[0]!]).toEqual([1]);
    actor.stop();
  });

  it('goes degraded with no-credentials and tells the client nothing', async () => {
    const inference = new FakeInference({ openError: { kind: 'no-credentials', message: 'none' } });
    const { actor, outcomes } = run(inference);
    await waitFor(actor, (s) => s.matches({ active: { inference: 'degraded' } }));
    expect(actor.getSnapshot().context.degradedReason).toBe('no-credentials');
    expect(outcomes).toEqual([]);
    actor.stop();
  });

  it('goes degraded when the session fails to open, says why once, and reopens after the cooldown', async () => {
    const inference = new FakeInference({ openError: { kind: 'open-failed', message: 'app not deployed' } });
    const { actor, clock, outcomes } = run(inference, { degradedCooldownMs: 10_000 });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'degraded' } }));
    expect(actor.getSnapshot().context.degradedReason).toBe('open-failed: app not deployed');
    expect(outcomes).toEqual([{ inference_error: 'open failed: app not deployed' }]);
    clock.increment(10_000);
    await inference.until(() => inference.opened.length === 2);
    await waitFor(actor, (s) => s.matches({ active: { inference: 'degraded' } }));
    actor.stop();
  });

  it('goes degraded at once when a chunk finds the model missing (open-failed), and tries again after the cooldown', async () => {
    let call = 0;
    const inference = new FakeInference({
      auto: () => (++call === 1 ? { kind: 'open-failed', message: "Class 'a/B' not found" } : undefined),
    });
    const { actor, clock, outcomes } = run(inference, { maxInferenceFailures: 3, degradedCooldownMs: 10_000 });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    actor.send({ type: 'window.ready', chunk: chunk(0) });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'degraded' } }));
    expect(actor.getSnapshot().context.degradedReason).toBe("open-failed: Class 'a/B' not found");
    expect(actor.getSnapshot().context.failures).toBe(0);
    expect(outcomes).toEqual([
      { inference_error: "Class 'a/B' not found", window_id: 's1-0', chunk_start_s: 0, chunk_end_s: 0.5 },
    ]);
    clock.increment(10_000);
    expect(inferenceState(actor)).toBe('idle');
    actor.send({ type: 'window.ready', chunk: chunk(1) });
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }) && s.context.captions === 1);
    expect(actor.getSnapshot().context.degradedReason).toBeNull();
    actor.stop();
  });

  it('drops windows while degraded and stays ready for the next', async () => {
    const inference = new FakeInference({ openError: { kind: 'no-credentials', message: 'none' } });
    const { actor, ready } = run(inference);
    await waitFor(actor, (s) => s.matches({ active: { inference: 'degraded' } }));
    const before = ready();
    actor.send({ type: 'window.ready', chunk: chunk(0) });
    actor.send({ type: 'window.ready', chunk: chunk(1) });
    expect(actor.getSnapshot().context.chunksDropped).toBe(2);
    expect(ready()).toBe(before + 2);
    actor.stop();
  });

  it('on disconnect cancels the inference in flight, closes the inference session and finishes', async () => {
    const inference = new FakeInference();
    const { actor } = run(inference);
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    actor.send({ type: 'window.ready', chunk: chunk(0) });
    await inference.until(() => inference.calls.length === 1);
    actor.send({ type: 'connection.closed' });
    expect(inference.calls[0]!.signal.aborted).toBe(true);
    await waitFor(actor, (s) => s.status === 'done');
    expect(inference.closed).toEqual(['s1']);
  });

  it('closes a client that reads no acks for too long (slow-client policy)', async () => {
    const { actor, clock, closes } = run(new FakeInference());
    actor.send({ type: 'socket.throttled' });
    expect(actor.getSnapshot().matches({ active: { acking: 'throttled' } })).toBe(true);
    clock.increment(10_000);
    actor.send({ type: 'socket.drained' });
    expect(actor.getSnapshot().matches({ active: { acking: 'ready' } })).toBe(true);
    actor.send({ type: 'socket.throttled' });
    clock.increment(30_000);
    expect(closes).toEqual([{ code: 1008, reason: 'slow consumer: acks not read' }]);
    actor.stop();
  });
});

describe('session machine edges', () => {
  it('gives up on an inference session that never opens', async () => {
    const hanging = { open: () => new Promise<never>(() => undefined) };
    const { actor, clock, outcomes } = run(hanging, { inferenceTimeoutMs: 5_000 });
    clock.increment(5_000);
    expect(actor.getSnapshot().matches({ active: { inference: 'degraded' } })).toBe(true);
    expect(actor.getSnapshot().context.degradedReason).toBe('open-failed: timed out');
    expect(outcomes).toEqual([{ inference_error: 'open failed: timed out' }]);
    actor.stop();
  });

  it('drops a window that arrives while the session is not ready for one', async () => {
    const inference = new FakeInference();
    const { actor } = run(inference);
    await waitFor(actor, (s) => s.matches({ active: { inference: 'idle' } }));
    actor.send({ type: 'window.ready', chunk: chunk(0) });
    await inference.until(() => inference.calls.length === 1);
    actor.send({ type: 'window.ready', chunk: chunk(1) }); // one is already in flight
    expect(inference.calls).toHaveLength(1);
    expect(actor.getSnapshot().context.chunksDropped).toBe(1);
    actor.stop();
  });
});
