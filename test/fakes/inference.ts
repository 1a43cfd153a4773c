import type { Caption, FrameChunk, InferenceError, InferencePort, InferenceSession } from '../../src/adapters/inference.ts';
import { err, ok, type Result } from '../../src/result.ts';

export interface InferCall {
  sessionId: string;
  chunk: FrameChunk;
  signal: AbortSignal;
  /** Settles this call when the fake runs in manual mode. */
  resolve(result: Result<Caption, InferenceError>): void;
}

export interface FakeInferenceOptions {
  /** Fails `open` with this error. */
  openError?: InferenceError;
  /** When set, `infer` answers by itself: a caption, or the error this returns for the chunk. */
  auto?: (chunk: FrameChunk, call: number) => InferenceError | undefined;
  /** Delay of an automatic answer. */
  latencyMs?: number;
}

/** In-memory inference port with hooks a test can drive; it records every call. */
export class FakeInference implements InferencePort {
  readonly opened: string[] = [];
  readonly closed: string[] = [];
  readonly calls: InferCall[] = [];
  private readonly waiters: Array<() => void> = [];

  private readonly options: FakeInferenceOptions;

  constructor(options: FakeInferenceOptions = {}) {
    this.options = options;
  }

  static caption(chunk: FrameChunk, text = `saw ${chunk.frames.length} frames`): Caption {
    return { caption: text, chunkStartS: chunk.startS, chunkEndS: chunk.endS, latencyMs: 12, tokensGenerated: 7 };
  }

  async open({ sessionId }: { sessionId: string }): Promise<Result<InferenceSession, InferenceError>> {
    this.opened.push(sessionId);
    this.notify();
    if (this.options.openError) return err(this.options.openError);
    const session: InferenceSession = {
      infer: (chunk, signal) =>
        new Promise((resolve) => {
          const call: InferCall = { sessionId, chunk, signal, resolve };
          this.calls.push(call);
          this.notify();
          const { auto } = this.options;
          if (auto) {
            const answer = () => {
              const failure = auto(chunk, this.calls.length);
              resolve(failure ? err(failure) : ok(FakeInference.caption(chunk)));
            };
            if (this.options.latencyMs) setTimeout(answer, this.options.latencyMs);
            else queueMicrotask(answer);
          }
        }),
      close: async () => {
        this.closed.push(sessionId);
        this.notify();
      },
    };
    return ok(session);
  }

  /** Resolves once `predicate` holds, re-checked on every recorded call. */
  until(predicate: () => boolean): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (predicate()) resolve();
        else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  private notify(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}
