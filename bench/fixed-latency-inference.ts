import type { FrameChunk, InferencePort } from '../src/adapters/inference.ts';
import { ok } from '../src/result.ts';

export interface ChunkStats {
  chunks: number;
  frames: number;
  bytes: number;
  framesSeen: number;
}

/**
 * The sequence number the load generator stamps on a frame (its first 4 bytes,
 * big-endian), or undefined for a shorter one.
 */
export const frameSequence = (frame: Uint8Array): number | undefined =>
  frame.length >= 4 ? ((frame[0]! << 24) | (frame[1]! << 16) | (frame[2]! << 8) | frame[3]!) >>> 0 : undefined;

/**
 * Stands in for the vision model in the benchmark: answers every chunk after a
 * fixed delay. The caption names the sequence number of the chunk's latest frame
 * (`… last #N`), so the load generator can time a caption from that frame.
 */
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
                  caption: `a scene of ${chunk.frames.length} frames, last #${frameSequence(chunk.frames.at(-1) ?? new Uint8Array()) ?? 0}`,
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
