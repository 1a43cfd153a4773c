import { Agent, request } from 'undici';
import { err, ok, type Result } from '../result.ts';
import type { CaptionUpload } from '../schemas/uploads.ts';
import type { Logger } from './logger.ts';
import type { Store } from './store.ts';

export interface WriteFailure {
  retryable: boolean;
  message: string;
}

/** Stores a batch of captions somewhere, all or none (re-sending one is harmless); never throws. */
export type CaptionWriter = (captions: readonly CaptionUpload[]) => Promise<Result<void, WriteFailure>>;

export interface CaptionSinkStats {
  written: number;
  retried: number;
  failed: number;
  dropped: number;
  pending: number;
}

/** Where sessions hand their captions: fire-and-forget for the stream, but never silently lossy. */
export interface CaptionSink {
  /**
   * Queues a caption; resolves true once it is stored, false when it never will
   * be (the queue was full, or the writes failed for good). Never rejects.
   */
  write(caption: CaptionUpload): Promise<boolean>;
  /** Waits for queued and in-flight writes, at most `timeoutMs`; resolves with what is still pending. */
  flush(timeoutMs: number): Promise<number>;
  stats(): CaptionSinkStats;
}

export interface CaptionSinkOptions {
  maxQueue?: number;
  /** Batches written at once, at most. */
  concurrency?: number;
  /** Captions handed to the writer in one call, at most (default 1). */
  batchSize?: number;
  /**
   * How long a caption may wait for others to fill its batch (default 0: none).
   * A full batch goes at once; a flush does not wait.
   */
  lingerMs?: number;
  /**
   * The least time between two batches (default 0). A caption that comes while
   * the writer is idle goes at once; under load, captions gather for at most
   * this long, so a writer in another thread is woken at most 1000/spacingMs
   * times a second, whatever the caption rate.
   */
  spacingMs?: number;
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  logger: Logger;
  random?: () => number;
}

interface Job {
  caption: CaptionUpload;
  attempts: number;
  settle: (stored: boolean) => void;
}

/**
 * A bounded queue in front of a writer: captions are written in batches of up
 * to `batchSize` (gathered for up to `lingerMs`) with limited concurrency;
 * batches that fail with a retryable error come back after an exponential
 * backoff with jitter; a full queue refuses new captions. Refusals and final
 * failures are counted and logged.
 */
export function createCaptionSink(writer: CaptionWriter, options: CaptionSinkOptions): CaptionSink {
  const maxQueue = options.maxQueue ?? 1_000;
  const concurrency = options.concurrency ?? 4;
  const batchSize = options.batchSize ?? 1;
  const lingerMs = options.lingerMs ?? 0;
  const spacingMs = options.spacingMs ?? 0;
  let lastBatchAt = -Infinity;
  let spacing: NodeJS.Timeout | null = null;
  const maxAttempts = options.maxAttempts ?? 5;
  const baseDelayMs = options.baseDelayMs ?? 200;
  const maxDelayMs = options.maxDelayMs ?? 10_000;
  const random = options.random ?? Math.random;
  const { logger } = options;

  const queue: Job[] = [];
  /** Batches waiting out a backoff, by their timer. */
  const waiting = new Map<NodeJS.Timeout, Job[]>();
  const stats = { written: 0, retried: 0, failed: 0, dropped: 0 };
  let runningBatches = 0;
  let runningJobs = 0;
  let linger: NodeJS.Timeout | null = null;
  let flushing = false;
  const idle: Array<() => void> = [];

  const waitingJobs = () => {
    let n = 0;
    for (const batch of waiting.values()) n += batch.length;
    return n;
  };
  const pending = () => queue.length + runningJobs + waitingJobs();

  const settleIfIdle = () => {
    if (pending() > 0) return;
    for (const resolve of idle.splice(0)) resolve();
  };

  const pump = () => {
    while (runningBatches < concurrency && queue.length > 0) {
      if (spacingMs > 0 && !flushing) {
        const wait = lastBatchAt + spacingMs - performance.now();
        if (wait > 0) {
          spacing ??= setTimeout(() => {
            spacing = null;
            pump();
          }, wait);
          break;
        }
        lastBatchAt = performance.now();
      }
      void run(queue.splice(0, batchSize));
    }
    if (queue.length === 0 && linger !== null) {
      clearTimeout(linger);
      linger = null;
    }
    settleIfIdle();
  };

  const run = async (batch: Job[]) => {
    runningBatches += 1;
    runningJobs += batch.length;
    for (const job of batch) job.attempts += 1;
    const result = await writer(batch.map((job) => job.caption));
    runningBatches -= 1;
    runningJobs -= batch.length;
    if (result.ok) {
      stats.written += batch.length;
      for (const job of batch) job.settle(true);
    } else {
      const again: Job[] = [];
      for (const job of batch) {
        if (result.error.retryable && job.attempts < maxAttempts) {
          again.push(job);
          continue;
        }
        stats.failed += 1;
        job.settle(false);
        logger.error(
          { windowId: job.caption.windowId, attempts: job.attempts, err: result.error.message },
          'caption write failed for good',
        );
      }
      if (again.length > 0) retryLater(again);
    }
    pump();
  };

  const retryLater = (batch: Job[]) => {
    stats.retried += batch.length;
    const attempts = Math.max(...batch.map((job) => job.attempts));
    // While flushing, retries do not wait: the shutdown deadline bounds them.
    const delay = flushing ? 0 : Math.min(maxDelayMs, baseDelayMs * 2 ** (attempts - 1)) * (0.5 + random() / 2);
    const timer = setTimeout(() => {
      waiting.delete(timer);
      queue.unshift(...batch);
      pump();
    }, delay);
    waiting.set(timer, batch);
  };

  return {
    write(caption) {
      if (pending() >= maxQueue) {
        stats.dropped += 1;
        logger.warn({ windowId: caption.windowId, maxQueue }, 'caption dropped: write queue full');
        return Promise.resolve(false);
      }
      return new Promise<boolean>((settle) => {
        queue.push({ caption, attempts: 0, settle });
        if (lingerMs === 0 || flushing || queue.length >= batchSize) pump();
        else linger ??= setTimeout(() => {
          linger = null;
          pump();
        }, lingerMs);
      });
    },
    flush(timeoutMs) {
      flushing = true;
      // A flush does not wait out backoff delays: retry those writes now.
      for (const [timer, batch] of waiting) {
        clearTimeout(timer);
        waiting.delete(timer);
        queue.push(...batch);
      }
      if (pending() === 0) return Promise.resolve(0);
      return new Promise<number>((resolve) => {
        const timer = setTimeout(() => resolve(pending()), timeoutMs);
        idle.push(() => {
          clearTimeout(timer);
          resolve(0);
        });
        pump();
      });
    },
    stats: () => ({ ...stats, pending: pending() }),
  };
}

/** Writes captions to the embedded store, a batch in one transaction. */
export function storeCaptionWriter(store: Store): CaptionWriter {
  return async (captions) => {
    try {
      await store.insertCaptionWindows(captions);
      return ok(undefined);
    } catch (error) {
      // SQLITE_BUSY and friends pass; a closed database does not come back.
      const { message, code } = error as Error & { code?: string };
      return err({ retryable: code !== 'ERR_INVALID_STATE', message });
    }
  };
}

export interface WorkerWriterOptions {
  baseUrl: string;
  magicWord: string;
  timeoutMs?: number;
}

/** POSTs captions to the Worker's `/captions/upload` (SPEC §8) over a pooled keep-alive agent. */
export function workerCaptionWriter(options: WorkerWriterOptions): CaptionWriter & { close(): Promise<void> } {
  // close() destroys: it runs after the flush, when a request still open has been given up on.
  const timeoutMs = options.timeoutMs ?? 5_000;
  const agent = new Agent({ connections: 8, connectTimeout: timeoutMs, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  const url = new URL('/captions/upload', options.baseUrl).toString();
  const post = async (caption: CaptionUpload): Promise<Result<void, WriteFailure>> => {
    try {
      const res = await request(url, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json', 'x-magic-word': options.magicWord },
        body: JSON.stringify(caption),
        signal: AbortSignal.timeout(timeoutMs),
      });
      // Drain, or the connection stays checked out: at most 128 KiB, then the connection is dropped.
      await res.body.dump();
      if (res.statusCode < 300) return ok(undefined);
      const retryable = res.statusCode >= 500 || res.statusCode === 429 || res.statusCode === 408;
      return err({ retryable, message: `worker answered ${res.statusCode}` });
    } catch (error) {
      return err({ retryable: true, message: (error as Error).message });
    }
  };
  // The Worker takes one caption a request: a batch goes one by one and stops at the first failure.
  const writer: CaptionWriter = async (captions) => {
    for (const caption of captions) {
      const result = await post(caption);
      if (!result.ok) return result;
    }
    return ok(undefined);
  };
  return Object.assign(writer, { close: () => agent.destroy() });
}
