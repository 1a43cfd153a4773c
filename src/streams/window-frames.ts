import { asyncScheduler, Observable, type OperatorFunction, type SchedulerLike, type Subscription } from 'rxjs';
import type { FrameChunk } from '../adapters/inference.ts';
import { EvenSampler, type SampleOwnership } from './even-sampler.ts';
import { pooledFrames } from './frame-copies.ts';
import { atOnce, type Defer } from './turns.ts';

/**
 * The async scheduler on a monotonic clock (`performance.now`): a wall-clock
 * step (NTP, a VM resume) does not move due times. Timers are relative
 * (setTimeout), so only `now` differs from RxJS's `asyncScheduler`.
 */
export const monotonicScheduler: SchedulerLike = {
  now: () => performance.now(),
  schedule: asyncScheduler.schedule.bind(asyncScheduler) as SchedulerLike['schedule'],
};

export interface WindowFramesOptions {
  /** Minimum age of a window, from its first frame, before it is dispatched. */
  spanMs: number;
  /** Frames kept per chunk, spread evenly over the window. */
  maxFrames: number;
  /**
   * Frames a window may see while it waits for the chunk in flight; past this the
   * stale window restarts, so a slow model is asked about the present.
   */
  maxWindowFrames: number;
  /**
   * How much longer than `spanMs` the first window lasts (default 0). Sessions
   * that start together (say, every client reconnecting after a restart) would
   * otherwise cut their chunks at the same instants, and their bursts of chunk
   * work would delay every ack behind them; a random share of the span spreads them.
   */
  firstWindowDelayMs?: number;
  /**
   * Rounds each window's due time up to a multiple of this many milliseconds on
   * the scheduler's clock (default 0: no rounding). The windows of many sessions
   * that fall due within one step then fire together and are cut one right after
   * the other (one per event-loop turn with the session's `defer`), while the
   * chunk path's code and data are still in the CPU's caches, instead of each
   * alone between reads that evict them (timer coalescing). A window lasts up to
   * this much longer.
   */
  alignMs?: number;
  /**
   * How a window's timer runs the dispatch once it fires (default: at once).
   * The session passes the process-wide chunk queue (`turns.ts`), so windows
   * falling due together are dispatched one per event-loop turn.
   */
  defer?: Defer;
  /** Emits when the consumer can take the next chunk (nothing is in flight). */
  ready$: Observable<unknown>;
  /** Prefix of the deterministic window id: `<prefix>-<index>`. */
  windowIdPrefix: string;
  /** How kept frames are held; by default in the frame pool, handed back when dropped (`frame-copies.ts`). */
  ownership?: SampleOwnership<Uint8Array>;
  /**
   * Whose clock and timers (default RxJS's `asyncScheduler`, which marble tests
   * drive in virtual time); the session passes `monotonicScheduler`.
   */
  scheduler?: SchedulerLike;
}

/**
 * Cuts a frame stream into chunks (SPEC §4): a chunk is dispatched when the
 * consumer is ready, frames are buffered and the window is at least `spanMs`
 * old. Nothing is dispatched until `ready$` first emits, and after each chunk
 * the operator waits for `ready$` again: one chunk in flight, frames arriving
 * meanwhile join the next one. Memory is O(maxFrames) whatever the frame rate.
 * Times are relative to subscription (the connection's start).
 */
export function windowFrames(options: WindowFramesOptions): OperatorFunction<Uint8Array, FrameChunk> {
  const { spanMs, maxFrames, maxWindowFrames, ready$, windowIdPrefix } = options;
  const firstSpanMs = spanMs + (options.firstWindowDelayMs ?? 0);
  const alignMs = options.alignMs ?? 0;
  const defer = options.defer ?? atOnce;
  const scheduler = options.scheduler ?? asyncScheduler;
  const alignUp = (ms: number) => (alignMs > 0 ? Math.ceil(ms / alignMs) * alignMs : ms);
  return (source) =>
    new Observable<FrameChunk>((subscriber) => {
      const originMs = scheduler.now();
      const sampler = new EvenSampler<Uint8Array>(maxFrames, options.ownership ?? pooledFrames);
      let ready = false;
      let firstAt = 0;
      let lastAt = 0;
      let index = 0;
      let timer: Subscription | null = null;

      const cancelTimer = () => {
        timer?.unsubscribe();
        timer = null;
      };

      /** Frames the next window will likely see, at this window's rate. */
      const expectedFrames = () => {
        const spanned = lastAt - firstAt;
        return spanned > 0 ? Math.floor(((sampler.seen - 1) * spanMs) / spanned) + 1 : 0;
      };

      const dispatchIfDue = () => {
        if (!ready || sampler.seen === 0) return;
        const now = scheduler.now();
        const dueAt = alignUp(firstAt + (index === 0 ? firstSpanMs : spanMs));
        if (now < dueAt) {
          if (timer === null) {
            const scheduled: Subscription = scheduler.schedule(
              () =>
                defer(() => {
                  if (timer === scheduled) timer = null;
                  if (!subscriber.closed) dispatchIfDue();
                }),
              dueAt - now,
            );
            timer = scheduled;
          }
          return;
        }
        cancelTimer();
        ready = false;
        const chunk: FrameChunk = {
          index,
          windowId: `${windowIdPrefix}-${index}`,
          startS: (firstAt - originMs) / 1000,
          endS: (lastAt - originMs) / 1000,
          framesSeen: sampler.seen,
          frames: sampler.take(expectedFrames()),
        };
        index += 1;
        subscriber.next(chunk);
      };

      const readySubscription = ready$.subscribe(() => {
        ready = true;
        dispatchIfDue();
      });

      const sourceSubscription = source.subscribe({
        next(frame) {
          const now = scheduler.now();
          // Only a window that waits for the consumer goes stale; a ready one is sent once old enough.
          if (!ready && sampler.seen >= maxWindowFrames) sampler.reset();
          if (sampler.seen === 0) firstAt = now;
          lastAt = now;
          sampler.push(frame);
          if (ready) dispatchIfDue();
        },
        error: (error: unknown) => subscriber.error(error),
        complete: () => subscriber.complete(),
      });

      return () => {
        cancelTimer();
        readySubscription.unsubscribe();
        sourceSubscription.unsubscribe();
        sampler.reset();
      };
    });
}
