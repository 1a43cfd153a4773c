import { describe, expect, it } from 'vitest';
import { EvenSampler } from '../../src/streams/even-sampler.ts';

/** A sampler that records which items it owned, as they are. */
const recording = (capacity: number) => {
  const owned: number[] = [];
  const sampler = new EvenSampler<number>(capacity, { own: (item) => (owned.push(item), item), release: () => undefined });
  return { owned, sampler };
};

const sampleOf = (capacity: number, n: number) => {
  const sampler = new EvenSampler<number>(capacity);
  for (let i = 0; i < n; i++) sampler.push(i);
  return sampler.take();
};

describe('EvenSampler', () => {
  it('keeps everything while under capacity', () => {
    expect(sampleOf(6, 4)).toEqual([0, 1, 2, 3]);
    expect(sampleOf(6, 6)).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('spreads a long sequence evenly, first and latest included', () => {
    expect(sampleOf(6, 15)).toEqual([0, 4, 8, 12, 14]);
    expect(sampleOf(6, 30)).toEqual([0, 8, 16, 24, 29]);
  });

  it('never holds more than capacity, and gaps stay within twice the even spacing', () => {
    for (let capacity = 2; capacity <= 8; capacity++) {
      for (let n = 1; n <= 400; n++) {
        const out = sampleOf(capacity, n);
        expect(out.length).toBeLessThanOrEqual(capacity);
        expect(out[0]).toBe(0);
        expect(out.at(-1)).toBe(n - 1);
        if (n > capacity) {
          expect(out.length).toBeGreaterThanOrEqual(Math.ceil(capacity / 2));
          const even = (n - 1) / (capacity - 1);
          for (let i = 1; i < out.length; i++) expect(out[i]! - out[i - 1]!).toBeLessThanOrEqual(2 * even);
        }
      }
    }
  });

  it('keeps only the latest with a capacity of one', () => {
    expect(sampleOf(1, 10)).toEqual([9]);
  });

  it('starts over after reset', () => {
    const sampler = new EvenSampler<number>(3);
    for (let i = 0; i < 10; i++) sampler.push(i);
    sampler.reset();
    expect(sampler.seen).toBe(0);
    expect(sampler.take()).toEqual([]);
    sampler.push(42);
    expect(sampler.take()).toEqual([42]);
  });

  it('owns what it keeps, releases what it drops, and hands the sample over on take', () => {
    const owned: number[] = [];
    const released: number[] = [];
    // Owned items are negated, so the sample shows which ones went through `own`.
    const sampler = new EvenSampler<number>(3, {
      own: (item) => (owned.push(item), -item),
      release: (item) => released.push(item),
    });
    for (let i = 1; i <= 6; i++) sampler.push(i);
    // 1, 2, 3 fill it; 4 thins it to 1, 3 (stride 2) and passes as the latest; 5 is kept;
    // 6 thins it to 1, 5 (stride 4) and passes as the latest, owned only when taken
    expect(owned).toEqual([1, 2, 3, 5]);
    expect(released).toEqual([-2, -3]);
    expect(sampler.take()).toEqual([-1, -5, -6]);
    expect(owned).toEqual([1, 2, 3, 5, 6]);
    expect(released).toEqual([-2, -3]);
    sampler.push(7);
    sampler.reset();
    expect(released).toEqual([-2, -3, -7]);
    expect(sampler.take()).toEqual([]);
  });

  it('starts a run with the stride the expected length needs, so it keeps only what it will hand over', () => {
    const { owned, sampler } = recording(6);
    for (let i = 0; i < 16; i++) sampler.push(i);
    sampler.take(16);
    owned.length = 0;
    for (let i = 0; i < 16; i++) sampler.push(i);
    expect(sampler.take(16)).toEqual([0, 4, 8, 12, 15]);
    expect(owned).toEqual([0, 4, 8, 12, 15]);
    // A longer run than expected still fits the capacity; a shorter one keeps first and latest.
    for (let i = 0; i < 40; i++) sampler.push(i);
    const longer = sampler.take(16);
    expect(longer.length).toBeLessThanOrEqual(6);
    expect([longer[0], longer.at(-1)]).toEqual([0, 39]);
    for (let i = 0; i < 3; i++) sampler.push(i);
    expect(sampler.take()).toEqual([0, 2]);
  });

  it('keeps the expected stride when a run is cut short and started over', () => {
    const { owned, sampler } = recording(6);
    sampler.take(16);
    for (let i = 0; i < 10; i++) sampler.push(i);
    sampler.reset();
    owned.length = 0;
    for (let i = 0; i < 16; i++) sampler.push(i);
    expect(sampler.take()).toEqual([0, 4, 8, 12, 15]);
    expect(owned).toEqual([0, 4, 8, 12, 15]);
  });

  it('rejects a capacity that is not a positive integer', () => {
    expect(() => new EvenSampler(0)).toThrow(RangeError);
  });
});
