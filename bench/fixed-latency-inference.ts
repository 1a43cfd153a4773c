import type { FrameChunk, InferencePort } from '../src/adapters/inference.ts';
import { ok } from '../src/result.ts';

export interface ChunkStats {
  chunks: number;
  frames: number;
  bytes: number;
  framesSeen: number;
}

/** Stands in for the vision model in the benchmark: answers every chunk after a fixed delay. */
export function fixedLatencyInference(latencyMs: number, stats: ChunkStats): InferencePort {
  return {
    open: async () =>
      ok({
        infer: (chunk: FrameChunk, signal: AbortSignal) =>
          new Promise((resolve) => {
            stats.chunks += 1;
            stats.frames += chunk.frames.length;
            stats.framesSeen += chunk.framesSeen;
            for (const frame of chunk.frames) stats.bytes += frame.length;
            const timer = setTimeout(() => {
              signal.removeEventListener('abort', onAbort);
              resolve(
                ok({
                  caption: `a scene of ${chunk.frames.length} frames`,
                  chunkStartS: chunk.startS,
                  chunkEndS: chunk.endS,
                  latencyMs,
                  tokensGenerated: 8,
                }),
              );
            }, latencyMs);
            const onAbort = () => clearTimeout(timer);
            signal.addEventListener('abort', onAbort, { once: true });
          }),
        close: async () => undefined,
      }),
  };
}
