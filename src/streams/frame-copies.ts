import type { SampleOwnership } from './even-sampler.ts';

/**
 * Frames kept past their message live in buffers from a process-wide pool,
 * and go back to it once done with. The socket reader receives large
 * messages into pool buffers (`take`), so keeping one of those takes the
 * buffer over (`keep`); anything else is copied.
 *
 * Why: a message's bytes are only lent by the socket (`websocket.ts`), so a
 * kept frame needs a buffer of its own; and a fresh ArrayBuffer per frame (about 40 MB/s at
 * 200 sessions × 15 fps × 40 KiB) keeps V8's incremental marking running from
 * one mark-compact to the next, even when every copy is freed promptly
 * (bench/RESULTS.md). Reused buffers cost the collector nothing.
 *
 * Buffers come in size classes eight to a power of two (at most 12.5 % of a
 * buffer unused). Free buffers beyond `maxFreeBytes` are freed at once, and
 * buffers that stayed free through a whole trim interval are freed then, so
 * the pool follows the load back down.
 */
export class FramePool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  /** Per size class, the fewest free buffers seen since the last trim: those were never needed. */
  private readonly idle = new Map<number, number>();
  private readonly made = new WeakSet<ArrayBuffer>();
  private readonly pooled = new WeakSet<ArrayBuffer>();
  /** Buffers a socket reader has taken to receive messages into, and may still write into. */
  private readonly lent = new WeakSet<ArrayBuffer>();
  private freeBytes = 0;
  private trimTimer: NodeJS.Timeout | undefined;
  readonly maxFreeBytes: number;
  readonly trimIntervalMs: number;

  constructor(options: { maxFreeBytes?: number; trimIntervalMs?: number } = {}) {
    this.maxFreeBytes = options.maxFreeBytes ?? 64 * 1024 * 1024;
    this.trimIntervalMs = options.trimIntervalMs ?? 10_000;
  }

  /** Bytes held in free buffers. */
  get freeByteCount(): number {
    return this.freeBytes;
  }

  /** A copy of `bytes` in a pooled buffer; hand it back with `release` once done with it. */
  copy(bytes: Uint8Array): Uint8Array {
    if (bytes.length === 0) return new Uint8Array(0);
    const copy = new Uint8Array(this.pop(sizeClass(bytes.length)), 0, bytes.length);
    copy.set(bytes);
    return copy;
  }

  /**
   * Keeps `bytes` as they are when they lie in a buffer a reader took with
   * `take` (the reader then writes there no more), else as a copy. Either way
   * the frame is the caller's, to `release` once done with it.
   */
  keep(bytes: Uint8Array): Uint8Array {
    const { buffer } = bytes;
    if (buffer instanceof ArrayBuffer && this.lent.delete(buffer)) return bytes;
    return this.copy(bytes);
  }

  /**
   * A buffer of at least `size` bytes for a socket reader to receive messages
   * into. It stays the reader's while `isLent` says so: `keep` may take it
   * over, and the reader hands it back with `giveBack` when done.
   */
  take(size: number): Uint8Array {
    const buffer = this.pop(sizeClass(size));
    this.lent.add(buffer);
    return new Uint8Array(buffer);
  }

  /** Whether the reader that took this buffer may still write into it. */
  isLent(bytes: Uint8Array): boolean {
    return bytes.buffer instanceof ArrayBuffer && this.lent.has(bytes.buffer);
  }

  /** A reader is done with a buffer it took (and that no one kept). */
  giveBack(bytes: Uint8Array): void {
    if (bytes.buffer instanceof ArrayBuffer && this.lent.delete(bytes.buffer)) this.release(bytes);
  }

  /** A free buffer of exactly `size` bytes (a size class), or a new one. */
  private pop(size: number): ArrayBuffer {
    const stack = this.free.get(size);
    const buffer = stack?.pop();
    if (buffer && stack) {
      this.pooled.delete(buffer);
      this.freeBytes -= size;
      if (stack.length < (this.idle.get(size) ?? Infinity)) this.idle.set(size, stack.length);
      return buffer;
    }
    const fresh = new ArrayBuffer(size);
    this.made.add(fresh);
    return fresh;
  }

  /**
   * Takes back the buffer of a frame made by `copy` or kept with `keep`; the
   * frame must not be read after this. A frame from elsewhere, one a reader
   * still lends, or one already released is left alone.
   */
  release(frame: Uint8Array): void {
    const { buffer } = frame;
    if (!(buffer instanceof ArrayBuffer) || !this.made.has(buffer) || this.pooled.has(buffer) || buffer.detached) return;
    // A reader's buffer goes back through `giveBack`, not through one of the frames it lent.
    if (this.lent.has(buffer)) return;
    const size = buffer.byteLength;
    if (this.freeBytes + size > this.maxFreeBytes) {
      buffer.transfer(0);
      return;
    }
    let stack = this.free.get(size);
    if (!stack) {
      stack = [];
      this.free.set(size, stack);
      this.idle.set(size, 0);
    }
    stack.push(buffer);
    this.pooled.add(buffer);
    this.freeBytes += size;
    this.trimTimer ??= setInterval(() => this.trim(), this.trimIntervalMs).unref();
  }

  /** Whether the frame's buffer is back in the pool. */
  holds(frame: Uint8Array): boolean {
    return frame.buffer instanceof ArrayBuffer && this.pooled.has(frame.buffer);
  }

  /** Frees the buffers that stayed free since the last trim. */
  trim(): void {
    for (const [size, stack] of this.free) {
      const unused = Math.min(this.idle.get(size) ?? 0, stack.length);
      for (const buffer of stack.splice(0, unused)) {
        this.pooled.delete(buffer);
        buffer.transfer(0);
      }
      this.freeBytes -= unused * size;
      if (stack.length === 0) {
        this.free.delete(size);
        this.idle.delete(size);
      } else {
        this.idle.set(size, stack.length);
      }
    }
    if (this.free.size === 0) {
      clearInterval(this.trimTimer);
      this.trimTimer = undefined;
    }
  }
}

/** The smallest size class that holds `length` bytes: 1 KiB, or eight steps to each power of two above it. */
export function sizeClass(length: number): number {
  if (length <= 1024) return 1024;
  const base = 2 ** (31 - Math.clz32(length - 1));
  const step = base / 8;
  return base + Math.ceil((length - base) / step) * step;
}

/** The pool the windowing and the session share. */
export const framePool = new FramePool();

export function copyFrame(bytes: Uint8Array): Uint8Array {
  return framePool.copy(bytes);
}

/** A frame of the caller's own: the socket's buffer taken over when it can be, else a copy. */
export function keepFrame(bytes: Uint8Array): Uint8Array {
  return framePool.keep(bytes);
}

export function releaseFrame(frame: Uint8Array): void {
  framePool.release(frame);
}

export function releaseFrames(frames: readonly Uint8Array[]): void {
  for (const frame of frames) framePool.release(frame);
}

/** How the windowing operator's sampler holds frames: the socket's pooled buffers, or pooled copies. */
export const pooledFrames: SampleOwnership<Uint8Array> = { own: keepFrame, release: releaseFrame };
