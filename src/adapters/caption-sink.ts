import { Agent, request } from 'undici';
import { err, ok, type Result } from '../result.ts';
import type { CaptionUpload } from '../schemas/uploads.ts';
import type { Logger } from './logger.ts';
import type { Store } from './store.ts';

export interface WriteFailure {
  retryable: boolean;
  message: string;
}

/** Stores one caption somewhere; never throws. */
export type CaptionWriter = (caption: CaptionUpload) => Promise<Result<void, WriteFailure>>;

export interface CaptionSinkStats {
  written: number;
  retried: number;
  failed: number;
  dropped: number;
  pending: number;
}

/** Where sessions hand their captions: fire-and-forget for the stream, but never silently lossy. */
export interface CaptionSink {
  write(caption: CaptionUpload): void;
  /** Waits for queued and in-flight writes, at most `timeoutMs`; resolves with what is still pending. */
  flush(timeoutMs: number): Promise<number>;
  stats(): CaptionSinkStats;
}

export interface CaptionSinkOptions {
  maxQueue?: number;
  concurrency?: number;
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  logger: Logger;
  random?: () => number;
}

interface Job {
  caption: CaptionUpload;
  attempts: number;
}

/**
 * A bounded queue in front of a writer: writes run with limited concurrency,
 * failures marked retryable come back after an exponential backoff with
 * jitter, a full queue refuses new captions. Refusals and final failures are
 * counted and logged.
 */
export function createCaptionSink(writer: CaptionWriter, options: CaptionSinkOptions): CaptionSink {
  const maxQueue = options.maxQueue ?? 1_000;
  const concurrency = options.concurrency ?? 4;
  const maxAttempts = options.maxAttempts ?? 5;
  const baseDelayMs = options.baseDelayMs ?? 200;
  const maxDelayMs = options.maxDelayMs ?? 10_000;
  const random = options.random ?? Math.random;
  const { logger } = options;

  const queue: Job[] = [];
  /** Jobs waiting out a backoff, by their timer. */
  const waiting = new Map<NodeJS.Timeout, Job>();
  const stats = { written: 0, retried: 0, failed: 0, dropped: 0 };
  let running = 0;
  let flushing = false;
  const idle: Array<() => void> = [];

  const pending = () => queue.length + running + waiting.size;

  const settleIfIdle = () => {
    if (pending() > 0) return;
    for (const resolve of idle.splice(0)) resolve();
  };

  const pump = () => {
    while (running < concurrency && queue.length > 0) {
      const job = queue.shift() as Job;
      running += 1;
      void run(job);
    }
    settleIfIdle();
  };

  const run = async (job: Job) => {
    job.attempts += 1;
    const result = await writer(job.caption);
    running -= 1;
    if (result.ok) {
      stats.written += 1;
    } else if (result.error.retryable && job.attempts < maxAttempts) {
      stats.retried += 1;
      // While flushing, retries do not wait: the shutdown deadline bounds them.
      const delay = flushing ? 0 : Math.min(maxDelayMs, baseDelayMs * 2 ** (job.attempts - 1)) * (0.5 + random() / 2);
      const timer = setTimeout(() => {
        waiting.delete(timer);
        queue.unshift(job);
        pump();
      }, delay);
      waiting.set(timer, job);
    } else {
      stats.failed += 1;
      logger.error(
        { windowId: job.caption.windowId, attempts: job.attempts, err: result.error.message },
        'caption write failed for good',
      );
    }
    pump();
  };

  return {
    write(caption) {
      if (pending() >= maxQueue) {
        stats.dropped += 1;
        logger.warn({ windowId: caption.windowId, maxQueue }, 'caption dropped: write queue full');
        return;
      }
      queue.push({ caption, attempts: 0 });
      pump();
    },
    flush(timeoutMs) {
      flushing = true;
      // A flush does not wait out backoff delays: retry those writes now.
      for (const [timer, job] of waiting) {
        clearTimeout(timer);
        waiting.delete(timer);
        queue.push(job);
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

/** Writes captions to the embedded store. */
export function storeCaptionWriter(store: Store): CaptionWriter {
  return async (caption) => {
    try {
      await store.insertCaptionWindow(caption);
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
  const writer = async (caption: CaptionUpload): Promise<Result<void, WriteFailure>> => {
    try {
      const res = await request(url, {
        method: 'POST',
        dispatcher: agent,
        headers: { 'content-type': 'application/json', 'x-magic-word': options.magicWord },
        body: JSON.stringify(caption),
        signal: AbortSignal.timeout(timeoutMs),
      });
      await res.body.text(); // drain, or the connection stays checked out
      if (res.statusCode < 300) return ok(undefined);
      const retryable = res.statusCode >= 500 || res.statusCode === 429 || res.statusCode === 408;
      return err({ retryable, message: `worker answered ${res.statusCode}` });
    } catch (error) {
      return err({ retryable: true, message: (error as Error).message });
    }
  };
  return Object.assign(writer, { close: () => agent.destroy() });
}
