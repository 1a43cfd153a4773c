import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import type { FrameChunk } from '../../src/adapters/inference.ts';
import { windowFrames } from '../../src/streams/window-frames.ts';

// One marble character is 1 ms of virtual time; chunk times are seconds since subscription.
const f = (n: number) => Uint8Array.of(n);
const frames = { a: f(1), b: f(2), c: f(3), d: f(4), e: f(5), g: f(6), h: f(7), i: f(8), j: f(9), k: f(10) };

const chunk = (index: number, parts: Uint8Array[], startMs: number, endMs: number, seen = parts.length): FrameChunk => ({
  index,
  windowId: `s1-${index}`,
  frames: parts,
  startS: startMs / 1000,
  endS: endMs / 1000,
  framesSeen: seen,
});

const scheduler = () => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));

const options = { spanMs: 5, maxFrames: 6, maxWindowFrames: 120, windowIdPrefix: 's1' };

describe('windowFrames', () => {
  it('dispatches a window once it is spanMs old, by timer when frames stop', () => {
    scheduler().run(({ hot, expectObservable }) => {
      const ready = hot('r');
      const source = hot('-a-b-c------', frames);
      const expected = '  ------x-----';
      expectObservable(source.pipe(windowFrames({ ...options, ready$: ready }))).toBe(expected, {
        x: chunk(0, [f(1), f(2), f(3)], 1, 5),
      });
    });
  });

  it('makes only the first window longer by firstWindowDelayMs', () => {
    scheduler().run(({ hot, expectObservable }) => {
      // Due at 1 + 5 + 3 = 9 instead of 6; the next window, from c at 10, is due at 15 as usual.
      const ready = hot('r----------r', { r: 1 });
      const source = hot('-a-b------c-d--------', frames);
      const expected = '  ---------x-----y-----';
      expectObservable(source.pipe(windowFrames({ ...options, firstWindowDelayMs: 3, ready$: ready }))).toBe(expected, {
        x: chunk(0, [f(1), f(2)], 1, 3),
        y: chunk(1, [f(3), f(4)], 10, 12),
      });
    });
  });

  it('rounds due times up to a multiple of alignMs: a frame arriving in between joins the chunk', () => {
    scheduler().run(({ hot, expectObservable }) => {
      // a at 1: due at 6, rounded to 8, so c at 7 is in it. d at 10: due at 15, rounded to 16.
      const ready = hot('r---------r', { r: 1 });
      const source = hot('-a-----c--d--------', frames);
      const expected = '  --------x-------y---';
      expectObservable(source.pipe(windowFrames({ ...options, alignMs: 4, ready$: ready }))).toBe(expected, {
        x: chunk(0, [f(1), f(3)], 1, 7),
        y: chunk(1, [f(4)], 10, 10),
      });
    });
  });

  it("runs the timer's dispatch through defer", () => {
    const testScheduler = scheduler();
    testScheduler.run(({ hot, expectObservable }) => {
      // Due at 6: the timer fires then, and the deferred dispatch runs 2 ms later.
      const ready = hot('r');
      const source = hot('-a-b-c------', frames);
      const expected = '  --------x---';
      const defer = (task: () => void) => void testScheduler.schedule(task, 2);
      expectObservable(source.pipe(windowFrames({ ...options, defer, ready$: ready }))).toBe(expected, {
        x: chunk(0, [f(1), f(2), f(3)], 1, 5),
      });
    });
  });

  it('keeps one chunk in flight: frames meanwhile join the next chunk, sent when ready again', () => {
    scheduler().run(({ hot, expectObservable }) => {
      // ready at 0 and again at 20; b and c arrive while chunk 0 is in flight
      const ready = hot('r------------------- r', { r: 1 });
      const source = hot('-a-------b-c-------- ---', frames);
      const expected = '  ------x------------- y--';
      expectObservable(source.pipe(windowFrames({ ...options, ready$: ready }))).toBe(expected, {
        x: chunk(0, [f(1)], 1, 1),
        y: chunk(1, [f(2), f(3)], 9, 11),
      });
    });
  });

  it('dispatches nothing before the consumer is first ready', () => {
    scheduler().run(({ hot, expectObservable }) => {
      const ready = hot('---------- r', { r: 1 });
      const source = hot('-a-b------ ---', frames);
      const expected = '  ---------- x--';
      expectObservable(source.pipe(windowFrames({ ...options, ready$: ready }))).toBe(expected, {
        x: chunk(0, [f(1), f(2)], 1, 3),
      });
    });
  });

  it('costs nothing while no frames come', () => {
    scheduler().run(({ hot, expectObservable }) => {
      const ready = hot('r-------------------');
      const source = hot('--------------------', frames);
      expectObservable(source.pipe(windowFrames({ ...options, ready$: ready }))).toBe('--------------------');
    });
  });

  it('samples a long window down to maxFrames, first and latest kept', () => {
    scheduler().run(({ hot, expectObservable }) => {
      const ready = hot('r');
      const source = hot('abcdeghijk--', frames);
      const expected = '  ---------x--';
      expectObservable(source.pipe(windowFrames({ ...options, spanMs: 9, maxFrames: 4, ready$: ready }))).toBe(
        expected,
        { x: chunk(0, [f(1), f(5), f(9), f(10)], 0, 9, 10) },
      );
    });
  });

  it('restarts a window that saw maxWindowFrames frames while waiting, so chunks stay current', () => {
    scheduler().run(({ hot, expectObservable }) => {
      // the restarted window (from j at 8) is due at 13, after ready at 12
      const ready = hot('------------r', { r: 1 });
      const source = hot('abcdeghijk------', frames);
      const expected = '  -------------x--';
      expectObservable(source.pipe(windowFrames({ ...options, maxWindowFrames: 4, ready$: ready }))).toBe(expected, {
        x: chunk(0, [f(9), f(10)], 8, 9),
      });
    });
  });

  it('lets a window grow past maxWindowFrames while the consumer is ready, so fast streams still get chunks', () => {
    scheduler().run(({ hot, expectObservable }) => {
      // ten frames in a 9 ms window with room for 4: nothing is in flight, so nothing restarts
      const ready = hot('r');
      const source = hot('abcdeghijk--', frames);
      const expected = '  ---------x--';
      expectObservable(
        source.pipe(windowFrames({ ...options, spanMs: 9, maxFrames: 4, maxWindowFrames: 4, ready$: ready })),
      ).toBe(expected, { x: chunk(0, [f(1), f(5), f(9), f(10)], 0, 9, 10) });
    });
  });

  it('keeps only the frames it sends once it knows the rate, and lets go of a window cut short', () => {
    const owned: number[] = [];
    const released: number[] = [];
    const ownership = { own: (frame: Uint8Array) => (owned.push(frame[0]!), frame), release: (frame: Uint8Array) => released.push(frame[0]!) };
    const values = Object.fromEntries([...'abcdefghijklmnopqrstuvwxyzABCDEFG'].map((key, i) => [key, f(i)]));
    scheduler().run(({ hot, expectObservable }) => {
      // one frame a millisecond, 15 ms windows: 16 frames each, the next window due at 31
      const ready = hot('r---------------r', { r: 1 });
      const source = hot('abcdefghijklmnopqrstuvwxyzABCDEFG-', values);
      const subscription = '^---------------------------------!';
      const expected = '  ---------------x---------------y--';
      const windows = source.pipe(windowFrames({ ...options, spanMs: 15, ready$: ready, ownership }));
      expectObservable(windows, subscription).toBe(expected, {
        x: chunk(0, [0, 4, 8, 12, 15].map(f), 0, 15, 16),
        y: chunk(1, [16, 20, 24, 28, 31].map(f), 16, 31, 16),
      });
    });
    // The first window kept (and later dropped) more than it sent; the second kept exactly what it sent.
    expect(owned.filter((n) => n < 16)).toEqual([0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15]);
    expect(owned.filter((n) => n >= 16 && n < 32)).toEqual([16, 20, 24, 28, 31]);
    // Frame 32 started a third window; the subscription's end let it go.
    expect(released).toEqual([1, 3, 5, 2, 6, 10, 32]);
  });

  it('completes with the source and drops a partial window', () => {
    scheduler().run(({ hot, expectObservable }) => {
      const ready = hot('r');
      const source = hot('-a-|', frames);
      expectObservable(source.pipe(windowFrames({ ...options, ready$: ready }))).toBe('---|');
    });
  });

  it('numbers chunks and derives window ids from the prefix', () => {
    scheduler().run(({ hot, expectObservable }) => {
      const ready = hot('r------r------r', { r: 1 });
      const source = hot('a------b------c------', frames);
      const expected = '  -----x------y------z';
      expectObservable(source.pipe(windowFrames({ ...options, ready$: ready }))).toBe(expected, {
        x: chunk(0, [f(1)], 0, 0),
        y: chunk(1, [f(2)], 7, 7),
        z: chunk(2, [f(3)], 14, 14),
      });
    });
  });
});
