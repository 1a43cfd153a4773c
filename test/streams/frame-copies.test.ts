import { describe, expect, it } from 'vitest';
import { copyFrame, releaseFrame, releaseFrames } from '../../src/streams/frame-copies.ts';

describe('frame copies', () => {
  it('copies a frame out of a larger buffer into one of its own', () => {
    const socketRead = Buffer.from('xxframe bytesyy');
    const frame = socketRead.subarray(2, 13);
    const copy = copyFrame(frame);
    expect(Buffer.from(copy).toString()).toBe('frame bytes');
    expect(copy.byteOffset).toBe(0);
    expect(copy.buffer.byteLength).toBe(11);
    expect(copy.buffer).not.toBe(socketRead.buffer);
  });

  it('frees a copy on release: it reads as empty, and a second release is harmless', () => {
    const copy = copyFrame(Uint8Array.of(1, 2, 3));
    releaseFrame(copy);
    expect(copy.length).toBe(0);
    expect((copy.buffer as ArrayBuffer).detached).toBe(true);
    expect(() => releaseFrame(copy)).not.toThrow();
  });

  it('leaves a view into a buffer it does not fill to the collector', () => {
    const socketRead = Buffer.from('xxframe bytesyy');
    const view = socketRead.subarray(2, 13);
    releaseFrames([view]);
    expect(view.length).toBe(11);
    expect(socketRead.toString()).toBe('xxframe bytesyy');
  });
});
