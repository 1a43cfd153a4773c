import { map, Observable } from 'rxjs';
import { assign, emit, fromCallback, fromEventObservable, fromPromise, raise, sendTo, setup } from 'xstate';
import {
  InferenceFailure,
  type Caption,
  type FrameChunk,
  type InferencePort,
  type InferenceSession,
  type InferenceTarget,
  type OpenRequest,
  cutText,
  MAX_HISTORY_ENTRY_CHARS,
} from '../adapters/inference.ts';
import { monotonicScheduler, windowFrames } from '../streams/window-frames.ts';
import { releaseFrames } from '../streams/frame-copies.ts';
import { atOnce, type Defer } from '../streams/turns.ts';

/** The result fields that ride on the next ack (SPEC §4); absent fields are left out. */
export type AckFields =
  | {
      caption: string;
      latency_ms: number;
      chunk_start_s: number;
      chunk_end_s: number;
      tokens_generated?: number;
      window_id: string;
    }
  | { inference_error: string; window_id?: string; chunk_start_s?: number; chunk_end_s?: number };

export interface SessionVisionSettings {
  chunkMs: number;
  framesPerChunk: number;
  maxBufferFrames: number;
  maxInferenceFailures: number;
  inferenceTimeoutMs: number;
  degradedCooldownMs: number;
  prompt: string;
  /** A client throttled (not reading its acks) this long is asked to close with 1008; default 30 s. */
  slowClientTimeoutMs?: number;
  /** Captions kept and sent with every chunk, oldest first (VISION_HISTORY_CAPTIONS); 0 sends none; default 6. */
  historyCaptions?: number;
}

export interface SessionInput {
  sessionId: string;
  /** Frame bytes as they arrive on the socket. */
  frames: Observable<Uint8Array>;
  vision: SessionVisionSettings;
  /** Credentials the connection brought (upgrade headers), instead of the server's. */
  inferenceTarget?: InferenceTarget;
  /** How much longer than `chunkMs` the first window lasts (see `windowFrames`); 0 when absent. */
  firstWindowDelayMs?: number;
}

/** What the machine remembers of the chunk in flight; the frames stay with the invoked actor. */
export interface ChunkMeta {
  windowId: string;
  startS: number;
  endS: number;
}

export interface SessionContext extends SessionInput {
  inference: InferenceSession | null;
  inFlight: ChunkMeta | null;
  /** Consecutive inference failures; the circuit opens at `maxInferenceFailures`. */
  failures: number;
  degradedReason: string | null;
  chunksInferred: number;
  chunksDropped: number;
  captions: number;
  inferenceErrors: number;
  /** The session's latest captions, oldest first, at most `vision.historyCaptions` (see FrameChunk.history). */
  history: string[];
}

export type SessionEvent =
  | { type: 'window.ready'; chunk: FrameChunk }
  | { type: 'socket.throttled' }
  | { type: 'socket.drained' }
  | { type: 'connection.closed' }
  | { type: 'inference.done'; caption: Caption }
  | { type: 'inference.failed'; message: string; kind: string }
  /** Internal: the chunk in flight failed or timed out. */
  | { type: 'chunk.failed'; message: string; kind: string };

export type SessionEmitted =
  | { type: 'inference.outcome'; fields: AckFields; errorKind?: string }
  | { type: 'chunk.started'; frames: number; bytes: number }
  | { type: 'inference.ready' }
  | { type: 'session.close'; code: number; reason: string };

export interface WindowFramesInput {
  frames: Observable<Uint8Array>;
  ready$: Observable<unknown>;
  windowIdPrefix: string;
  vision: SessionVisionSettings;
  firstWindowDelayMs?: number;
}

/** VISION_HISTORY_CAPTIONS' default. */
export const DEFAULT_HISTORY_CAPTIONS = 6;

const notProvided = (name: string) => () => {
  throw new Error(`session actor "${name}" was not provided`);
};

/** Opens the inference session for a connection; a typed failure rejects with an InferenceFailure. */
export const openInferenceActor = (port: InferencePort) =>
  fromPromise<InferenceSession, OpenRequest>(async ({ input, signal }) => {
    const opened = await port.open(input, signal);
    if (!opened.ok) throw new InferenceFailure(opened.error);
    return opened.value;
  });

export type InferCommand = { type: 'infer'; inference: InferenceSession; chunk: FrameChunk } | { type: 'cancel' };

/**
 * Runs the session's chunks through its model, one at a time, for the whole
 * session. One long-lived actor instead of one per chunk: a chunk then costs
 * two events, not an actor's creation and teardown. `cancel` (sent when the
 * machine leaves `inferring`, on a timeout say) and stopping abort the chunk
 * in flight; a late answer to an aborted chunk is dropped. A call that settled
 * hands its signal, never aborted, to the next one (an AbortController is
 * costly to make); an aborted one is never used again.
 */
export const inferChunksActor = (defer: Defer = atOnce) =>
  fromCallback<InferCommand>(({ sendBack, receive }) => {
    let current: AbortController | null = null;
    let spare: AbortController | null = null;
    let stopped = false;
    const settle = (controller: AbortController, chunk: FrameChunk, report: SessionEvent) => {
      if (current !== controller) return;
      current = null;
      spare = controller;
      // The port has settled, so it is done with the frames. An aborted call may still read them: those go to the GC.
      releaseFrames(chunk.frames);
      // The machine hears of it in the chunk queue's next free turn (see turns.ts).
      defer(() => {
        if (!stopped) sendBack(report);
      });
    };
    receive((command) => {
      current?.abort();
      current = null;
      if (command.type !== 'infer') return;
      const controller = spare ?? new AbortController();
      spare = null;
      current = controller;
      const { chunk } = command;
      command.inference.infer(chunk, controller.signal).then(
        (result) =>
          settle(
            controller,
            chunk,
            result.ok
              ? { type: 'inference.done', caption: result.value }
              : { type: 'inference.failed', message: result.error.message, kind: result.error.kind },
          ),
        () => settle(controller, chunk, { type: 'inference.failed', message: 'inference failed', kind: 'remote' }),
      );
    });
    return () => {
      stopped = true;
      current?.abort();
    };
  });

/**
 * Closes the session's model side. The answer waits for a turn of `defer`
 * (the server's close queue): when thousands of sessions close at once (a
 * redeploy, a network cut), each one's teardown then runs in an event-loop
 * turn of its own, between which acks of live sessions go out.
 */
export const closeInferenceActor = (defer: Defer = atOnce) =>
  fromPromise<void, { inference: InferenceSession | null }>(async ({ input }) => {
    await input.inference?.close();
    if (defer !== atOnce) await new Promise<void>((resolve) => defer(resolve));
  });

/**
 * How far a window's due time is rounded up (see `windowFrames`' `alignMs`):
 * a twentieth of the span, at most 50 ms, none below a 20 ms span. With the
 * default 1 s span, windows fall due on a 50 ms grid, so the chunks of 200
 * sessions are cut about ten at a time instead of one at a time.
 */
const dispatchAlignMs = (chunkMs: number): number => Math.min(50, Math.floor(chunkMs / 20));

/** Feeds `window.ready` events from the frame stream, cut by the windowing operator. */
export const windowFramesActor = (defer: Defer = atOnce) =>
  fromEventObservable<{ type: 'window.ready'; chunk: FrameChunk }, WindowFramesInput>(({ input }) =>
    input.frames.pipe(
      windowFrames({
        spanMs: input.vision.chunkMs,
        maxFrames: input.vision.framesPerChunk,
        maxWindowFrames: input.vision.maxBufferFrames,
        alignMs: dispatchAlignMs(input.vision.chunkMs),
        defer,
        // Durations on a monotonic clock: a wall-clock step back would hold captions for as long.
        scheduler: monotonicScheduler,
        ...(input.firstWindowDelayMs ? { firstWindowDelayMs: input.firstWindowDelayMs } : {}),
        ready$: input.ready$,
        windowIdPrefix: input.windowIdPrefix,
      }),
      map((chunk) => ({ type: 'window.ready', chunk }) as const),
    ),
  );

/**
 * Builds the actors the session needs from an inference port; pass to
 * `.provide({ actors })`. `defer` runs the chunk work (window dispatches and
 * model answers): the server passes its chunk queue (`TurnQueue`), so the
 * chunk work of all sessions runs one task per event-loop turn; by default it
 * runs at once. `deferClose` does the same for each session's teardown (see
 * `closeInferenceActor`).
 */
export const sessionActors = (port: InferencePort, defer: Defer = atOnce, deferClose: Defer = atOnce) => ({
  openInference: openInferenceActor(port),
  inferChunks: inferChunksActor(defer),
  closeInference: closeInferenceActor(deferClose),
  windowFrames: windowFramesActor(defer),
});

const failureMessage = (error: unknown): string =>
  error instanceof InferenceFailure ? error.message : 'inference failed';

const failureKind = (error: unknown): string => (error instanceof InferenceFailure ? error.kind : 'remote');

/** Observable of one emitted event type of an actor, for wiring operators to a machine. */
const emittedBy = (
  actor: { on: (type: 'inference.ready', handler: () => void) => { unsubscribe(): void } },
  type: 'inference.ready',
): Observable<unknown> =>
  new Observable<unknown>((subscriber) => {
    const subscription = actor.on(type, () => subscriber.next(undefined));
    return () => subscription.unsubscribe();
  });

/**
 * One glasses connection (SPEC §5). Frames never pass through the machine: the
 * socket layer acks them and feeds the windowing operator, which sends the
 * machine one `window.ready` per chunk. The machine decides what happens to a
 * chunk and emits what the socket must tell the client.
 */
export const sessionMachine = setup({
  types: {} as {
    input: SessionInput;
    context: SessionContext;
    events: SessionEvent;
    emitted: SessionEmitted;
  },
  actors: {
    openInference: fromPromise<InferenceSession, OpenRequest>(notProvided('openInference')),
    inferChunks: fromCallback<InferCommand>(notProvided('inferChunks')),
    closeInference: fromPromise<void, { inference: InferenceSession | null }>(notProvided('closeInference')),
    windowFrames: windowFramesActor(),
  },
  actions: {
    announceReady: emit({ type: 'inference.ready' } as const),
    keepInference: assign({ inference: (_, params: { inference: InferenceSession }) => params.inference }),
    markDegraded: assign({ degradedReason: (_, params: { reason: string }) => params.reason }),
    clearDegraded: assign({ degradedReason: null }),
    countFailure: assign({
      failures: ({ context }) => context.failures + 1,
      inferenceErrors: ({ context }) => context.inferenceErrors + 1,
    }),
    resetFailures: assign({ failures: 0 }),
    startChunk: assign({
      chunksInferred: ({ context }) => context.chunksInferred + 1,
      inFlight: (_, params: { chunk: FrameChunk }) => ({
        windowId: params.chunk.windowId,
        startS: params.chunk.startS,
        endS: params.chunk.endS,
      }),
    }),
    endChunk: assign({ inFlight: null }),
    countDropped: assign({ chunksDropped: ({ context }) => context.chunksDropped + 1 }),
    // One assign for the whole answer: each assign copies the context and the snapshot.
    finishCaption: assign({
      failures: 0,
      captions: ({ context }) => context.captions + 1,
      inFlight: null,
      history: ({ context }, params: { caption: Caption }) => {
        const keep = context.vision.historyCaptions ?? DEFAULT_HISTORY_CAPTIONS;
        const text = cutText(params.caption.caption.trim(), MAX_HISTORY_ENTRY_CHARS);
        if (keep <= 0 || text === '') return context.history;
        const next = [...context.history, text];
        return next.length > keep ? next.slice(next.length - keep) : next;
      },
    }),
    emitCaption: emit(({ context }, params: { caption: Caption }) => {
      const { caption } = params;
      const fields: AckFields = {
        caption: caption.caption,
        latency_ms: caption.latencyMs,
        chunk_start_s: caption.chunkStartS,
        chunk_end_s: caption.chunkEndS,
        window_id: context.inFlight?.windowId ?? '',
      };
      if (caption.tokensGenerated !== null) fields.tokens_generated = caption.tokensGenerated;
      return { type: 'inference.outcome', fields } as const;
    }),
    emitInferenceError: emit(({ context }, params: { message: string; kind: string }) => {
      const fields: AckFields = { inference_error: params.message };
      if (context.inFlight) {
        fields.window_id = context.inFlight.windowId;
        fields.chunk_start_s = context.inFlight.startS;
        fields.chunk_end_s = context.inFlight.endS;
      }
      return { type: 'inference.outcome', fields, errorKind: params.kind } as const;
    }),
    announceChunk: emit((_, params: { chunk: FrameChunk }) => {
      let bytes = 0;
      for (const frame of params.chunk.frames) bytes += frame.length;
      return { type: 'chunk.started', frames: params.chunk.frames.length, bytes } as const;
    }),
    failChunk: raise(
      (_, params: { message: string; kind: string }) => ({ type: 'chunk.failed', message: params.message, kind: params.kind }) as const,
    ),
    askToClose: emit((_, params: { code: number; reason: string }) => ({ type: 'session.close', ...params }) as const),
  },
  guards: {
    // Guards run before the transition's actions: count the failure in hand.
    circuitOpen: ({ context }) => context.failures + 1 >= context.vision.maxInferenceFailures,
    // The model is not there (say, not deployed): retrying each chunk cannot help, the cooldown may.
    openFailed: (_, params: { kind: string }) => params.kind === 'open-failed',
    noCredentials: (_, params: { error: unknown }) => failureKind(params.error) === 'no-credentials',
    hasInference: ({ context }) => context.inference !== null,
  },
  delays: {
    errorBackoff: 1_000,
    degradedCooldown: ({ context }) => context.vision.degradedCooldownMs,
    inferenceTimeout: ({ context }) => context.vision.inferenceTimeoutMs,
    // A client that reads no acks for this long while sending is closed (slow-client policy).
    slowClientTimeout: ({ context }) => context.vision.slowClientTimeoutMs ?? 30_000,
    closeTimeout: 5_000,
  },
}).createMachine({
  id: 'session',
  context: ({ input }) => ({
    ...input,
    inference: null,
    inFlight: null,
    failures: 0,
    degradedReason: null,
    chunksInferred: 0,
    chunksDropped: 0,
    captions: 0,
    inferenceErrors: 0,
    history: [],
  }),
  initial: 'active',
  states: {
    active: {
      type: 'parallel',
      invoke: [
        { id: 'inferChunks', src: 'inferChunks' },
        {
        src: 'windowFrames',
        input: ({ context, self }) => ({
          frames: context.frames,
          ready$: emittedBy(self, 'inference.ready'),
          windowIdPrefix: context.sessionId,
          vision: context.vision,
          ...(context.firstWindowDelayMs ? { firstWindowDelayMs: context.firstWindowDelayMs } : {}),
        }),
        },
      ],
      on: { 'connection.closed': 'closing' },
      states: {
        acking: {
          initial: 'ready',
          states: {
            ready: { on: { 'socket.throttled': 'throttled' } },
            throttled: {
              on: { 'socket.drained': 'ready' },
              after: {
                slowClientTimeout: {
                  actions: { type: 'askToClose', params: { code: 1008, reason: 'slow consumer: acks not read' } },
                },
              },
            },
          },
        },
        inference: {
          initial: 'opening',
          // Windows only come when the machine announced it is ready; one that races a
          // state change (a cooldown ending, say) is dropped here, the next one follows.
          on: { 'window.ready': { actions: 'countDropped' } },
          states: {
            opening: {
              invoke: {
                src: 'openInference',
                input: ({ context }) => ({
                  sessionId: context.sessionId,
                  prompt: context.vision.prompt,
                  ...(context.inferenceTarget ? { target: context.inferenceTarget } : {}),
                }),
                onDone: {
                  target: 'idle',
                  actions: [
                    { type: 'keepInference', params: ({ event }) => ({ inference: event.output }) },
                    'clearDegraded',
                  ],
                },
                onError: [
                  {
                    guard: { type: 'noCredentials', params: ({ event }) => ({ error: event.error }) },
                    target: 'degraded',
                    actions: { type: 'markDegraded', params: { reason: 'no-credentials' } },
                  },
                  {
                    target: 'degraded',
                    actions: [
                      {
                        type: 'markDegraded',
                        params: ({ event }) => ({ reason: `open-failed: ${failureMessage(event.error)}` }),
                      },
                      {
                        type: 'emitInferenceError',
                        params: ({ event }) => ({ message: `open failed: ${failureMessage(event.error)}`, kind: 'open-failed' }),
                      },
                    ],
                  },
                ],
              },
              after: {
                inferenceTimeout: {
                  target: 'degraded',
                  actions: [
                    { type: 'markDegraded', params: { reason: 'open-failed: timed out' } },
                    { type: 'emitInferenceError', params: { message: 'open failed: timed out', kind: 'open-failed' } },
                  ],
                },
              },
            },
            idle: {
              entry: 'announceReady',
              on: {
                'window.ready': {
                  target: 'inferring',
                  actions: [
                    { type: 'startChunk', params: ({ event }) => ({ chunk: event.chunk }) },
                    { type: 'announceChunk', params: ({ event }) => ({ chunk: event.chunk }) },
                    sendTo('inferChunks', ({ context, event }) => {
                      if (context.inference === null) throw new Error('idle without an inference session');
                      // The chunk carries the session's own history: nothing else's, and the model keeps none.
                      const chunk = context.history.length > 0 ? { ...event.chunk, history: context.history } : event.chunk;
                      return { type: 'infer', inference: context.inference, chunk } as const;
                    }),
                  ],
                },
              },
            },
            inferring: {
              // An answer or a failure has settled the call already. A timeout cancels it here, and a
              // disconnect stops the inferChunks actor, which aborts it: no cancel on every answer.
              after: {
                inferenceTimeout: {
                  actions: [
                    sendTo('inferChunks', { type: 'cancel' }),
                    { type: 'failChunk', params: { message: 'inference timed out', kind: 'timeout' } },
                  ],
                },
              },
              on: {
                'inference.done': {
                  target: 'idle',
                  actions: [
                    { type: 'emitCaption', params: ({ event }) => ({ caption: event.caption }) },
                    { type: 'finishCaption', params: ({ event }) => ({ caption: event.caption }) },
                  ],
                },
                // A failure and a timeout end the chunk the same way: raised as one internal event.
                'inference.failed': {
                  actions: { type: 'failChunk', params: ({ event }) => ({ message: event.message, kind: event.kind }) },
                },
                'chunk.failed': [
                  {
                    guard: { type: 'openFailed', params: ({ event }) => ({ kind: event.kind }) },
                    target: 'degraded',
                    actions: [
                      'countFailure',
                      'resetFailures',
                      { type: 'markDegraded', params: ({ event }) => ({ reason: `open-failed: ${event.message}` }) },
                      { type: 'emitInferenceError', params: ({ event }) => ({ message: event.message, kind: event.kind }) },
                      'endChunk',
                    ],
                  },
                  {
                    guard: 'circuitOpen',
                    target: 'degraded',
                    actions: [
                      'countFailure',
                      'resetFailures',
                      { type: 'markDegraded', params: { reason: 'circuit-open' } },
                      { type: 'emitInferenceError', params: ({ event }) => ({ message: event.message, kind: event.kind }) },
                      'endChunk',
                    ],
                  },
                  {
                    target: 'backoff',
                    actions: [
                      'countFailure',
                      { type: 'emitInferenceError', params: ({ event }) => ({ message: event.message, kind: event.kind }) },
                      'endChunk',
                    ],
                  },
                ],
              },
            },
            backoff: {
              after: { errorBackoff: 'idle' },
            },
            degraded: {
              // A degraded session still cuts windows (memory stays bounded) but drops them.
              entry: 'announceReady',
              on: { 'window.ready': { actions: ['countDropped', 'announceReady'] } },
              after: {
                degradedCooldown: [
                  { guard: 'hasInference', target: 'idle', actions: 'clearDegraded' },
                  { target: 'opening' },
                ],
              },
            },
          },
        },
      },
    },
    closing: {
      invoke: {
        src: 'closeInference',
        input: ({ context }) => ({ inference: context.inference }),
        onDone: 'closed',
        onError: 'closed',
      },
      after: { closeTimeout: 'closed' },
    },
    closed: { type: 'final' },
  },
});
