import { describe, expect, it } from 'vitest';
import { FramePool, sizeClass } from '../../src/streams/frame-copies.ts';

describe('FramePool', () => {
  it('copies a frame out of a larger buffer into a pooled one', () => {
    const pool = new FramePool();
    const socketRead = Buffer.from('xxframe bytesyy');
    const copy = pool.copy(socketRead.subarray(2, 13));
    socketRead.fill(0);
    expect(Buffer.from(copy).toString()).toBe('frame bytes');
    expect(copy.byteOffset).toBe(0);
    expect(copy.buffer).not.toBe(socketRead.buffer);
  });

  it('hands a released buffer to the next copy of its size class', () => {
    const pool = new FramePool();
    const first = pool.copy(new Uint8Array(40_000).fill(1));
    pool.release(first);
    expect(pool.holds(first)).toBe(true);
    expect(pool.freeByteCount).toBe(sizeClass(40_000));
    const second = pool.copy(new Uint8Array(39_000).fill(2));
    expect(second.buffer).toBe(first.buffer);
    expect(second).toHaveLength(39_000);
    expect(second.every((b) => b === 2)).toBe(true);
    expect(pool.freeByteCount).toBe(0);
  });

  it('takes a buffer back once, however often it is released', () => {
    const pool = new FramePool();
    const frame = pool.copy(new Uint8Array(5_000));
    pool.release(frame);
    pool.release(frame);
    const a = pool.copy(new Uint8Array(5_000));
    const b = pool.copy(new Uint8Array(5_000));
    expect(a.buffer).toBe(frame.buffer);
    expect(b.buffer).not.toBe(a.buffer);
  });

  it('leaves frames it did not make alone', () => {
    const pool = new FramePool();
    const foreign = new Uint8Array(sizeClass(3_000)).fill(7);
    pool.release(foreign);
    expect(pool.holds(foreign)).toBe(false);
    expect(pool.freeByteCount).toBe(0);
    expect(foreign[0]).toBe(7);
  });

  it('frees what it would hold beyond maxFreeBytes', () => {
    const pool = new FramePool({ maxFreeBytes: 2 * sizeClass(10_000) });
    const frames = [1, 2, 3].map(() => pool.copy(new Uint8Array(10_000)));
    for (const frame of frames) pool.release(frame);
    expect(pool.freeByteCount).toBe(2 * sizeClass(10_000));
    expect(frames[2]).toHaveLength(0);
    expect((frames[2]!.buffer as ArrayBuffer).detached).toBe(true);
  });

  it('trims the buffers that stayed free through a whole interval, and keeps those in use', () => {
    const pool = new FramePool();
    const frames = [1, 2, 3, 4].map(() => pool.copy(new Uint8Array(8_000)));
    for (const frame of frames) pool.release(frame);
    pool.trim(); // starts the first interval: the four were only just freed
    expect(pool.freeByteCount).toBe(4 * sizeClass(8_000));
    const again = [pool.copy(new Uint8Array(8_000)), pool.copy(new Uint8Array(8_000))];
    for (const frame of again) pool.release(frame);
    pool.trim(); // two of the four were never taken in this interval
    expect(pool.freeByteCount).toBe(2 * sizeClass(8_000));
    pool.trim(); // and now the other two
    expect(pool.freeByteCount).toBe(0);
  });

  it('keeps a frame in a buffer a reader took without copying it, and the reader loses that buffer', () => {
    const pool = new FramePool();
    const slot = pool.take(40_000);
    slot.fill(9, 0, 40_000);
    const lent = slot.subarray(0, 40_000);
    const kept = pool.keep(lent);
    expect(kept).toBe(lent);
    expect(pool.isLent(slot)).toBe(false);
    pool.giveBack(slot); // the reader lets go of it: nothing happens, it is kept
    expect(pool.holds(kept)).toBe(false);
    pool.release(kept);
    expect(pool.holds(kept)).toBe(true);
  });

  it('copies a frame it cannot keep in place, and takes a reader\'s buffer back only through giveBack', () => {
    const pool = new FramePool();
    const slot = pool.take(40_000);
    const kept = pool.keep(slot.subarray(0, 100)); // the first keep takes the buffer over
    const copy = pool.keep(Uint8Array.of(1, 2, 3)); // not a reader's: copied
    expect(copy.buffer).not.toBe(kept.buffer);
    const other = pool.take(40_000);
    pool.release(other.subarray(0, 10)); // a lent frame released by mistake: ignored
    expect(pool.holds(other)).toBe(false);
    pool.giveBack(other);
    expect(pool.holds(other)).toBe(true);
  });

  it('sizes classes eight to a power of two, wasting at most an eighth', () => {
    expect([1, 1024, 1025, 2048, 40_000, 40_960, 40_961, 65_536].map(sizeClass)).toEqual([
      1024, 1024, 1152, 2048, 40_960, 40_960, 45_056, 65_536,
    ]);
    for (let length = 1025; length < 300_000; length += 997) {
      const size = sizeClass(length);
      expect(size).toBeGreaterThanOrEqual(length);
      expect(size - length).toBeLessThanOrEqual(size / 8);
    }
  });
});
