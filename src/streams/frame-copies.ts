import type { SampleOwnership } from './even-sampler.ts';

/**
 * Frames kept past their message are copied into buffers of their own and
 * freed explicitly once done with, instead of waiting for a full collection.
 *
 * Why: a frame's bytes live outside the JavaScript heap, and V8 counts external
 * memory allocated since the last mark-compact against the old space's limit.
 * A frame kept for a window survives a few scavenges, is promoted and then dies
 * in the old space, where only a mark-compact frees it; at 15 fps × 40 KiB × 200
 * sessions such frames start one mark-compact after another (bench/RESULTS.md).
 * A socket's message may also be a view into a larger read buffer that a kept
 * frame would pin. A copy owns exactly its bytes, and detaching it frees them now
 * and takes them off V8's external-memory count.
 */
export function copyFrame(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(bytes);
}

/**
 * Frees a frame made by `copyFrame`; it reads as empty afterwards. A view into
 * a buffer it does not fill, or a shared buffer, is left to the collector.
 */
export function releaseFrame(frame: Uint8Array): void {
  const { buffer } = frame;
  if (!(buffer instanceof ArrayBuffer) || buffer.detached) return;
  if (frame.byteOffset !== 0 || frame.byteLength !== buffer.byteLength) return;
  buffer.transfer(0);
}

export function releaseFrames(frames: readonly Uint8Array[]): void {
  for (const frame of frames) releaseFrame(frame);
}

/** How the windowing operator's sampler holds frames: copies it owns. */
export const frameCopies: SampleOwnership<Uint8Array> = { own: copyFrame, release: releaseFrame };
