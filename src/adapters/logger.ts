import { pino } from 'pino';

/** The logging role the rest of the code uses; pino satisfies it. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** Paths whose values never reach a log line. */
export const REDACTED_PATHS = [
  'magicWord',
  'apiKey',
  'tokenSecret',
  'tokenId',
  'headers.authorization',
  'headers["x-magic-word"]',
  'headers["x-poke-api-key"]',
  'headers["x-modal-token-id"]',
  'headers["x-modal-token-secret"]',
  '*.magicWord',
  '*.apiKey',
  '*.tokenSecret',
  '*.tokenId',
];

export interface LogRateLimit {
  /** Warnings and errors of one kind (level and message) written per window, at most; 0 turns the limit off. */
  lines: number;
  windowMs: number;
}

/**
 * By default 20 lines of a kind per 10 s: what a flood of one bad input can make
 * the server write. Lines below `warn` (a session's start and end, say) are not limited.
 */
export const DEFAULT_LOG_RATE_LIMIT: LogRateLimit = { lines: 20, windowMs: 10_000 };

/** pino's number for `warn`. */
const WARN = 40;

/** Kinds of line tracked at once, at most (the oldest is forgotten first). */
const MAX_KINDS = 1_000;

/**
 * Drops repeated log lines (finding 17): past `lines` lines of one level and
 * message in a window, the rest of the window's are counted, not written; the
 * next line of that kind says how many were dropped (`suppressed`). A flood of
 * one bad input then costs a few lines, not one per request.
 */
function rateLimited(limit: LogRateLimit, now: () => number) {
  const kinds = new Map<string, { since: number; written: number; suppressed: number }>();
  return function logMethod(this: unknown, args: unknown[], method: (...a: unknown[]) => void, level: number): void {
    if (level < WARN) {
      method.apply(this, args);
      return;
    }
    const message = typeof args[0] === 'string' ? args[0] : typeof args[1] === 'string' ? args[1] : '';
    const key = `${level}:${message}`;
    const at = now();
    let kind = kinds.get(key);
    if (!kind || at - kind.since >= limit.windowMs) {
      const suppressed = kind?.suppressed ?? 0;
      kinds.delete(key);
      kind = { since: at, written: 0, suppressed: 0 };
      kinds.set(key, kind);
      if (kinds.size > MAX_KINDS) kinds.delete(kinds.keys().next().value as string);
      if (suppressed > 0 && typeof args[0] === 'object' && args[0] !== null) {
        args = [{ ...(args[0] as object), suppressed }, ...args.slice(1)];
      }
    }
    if (kind.written >= limit.lines) {
      kind.suppressed += 1;
      return;
    }
    kind.written += 1;
    method.apply(this, args);
  };
}

/** Structured JSON logs on stdout (or the given stream), secrets redacted, repeated lines rate-limited. */
export function createLogger(
  level: string,
  destination?: NodeJS.WritableStream,
  options: { rateLimit?: LogRateLimit; now?: () => number } = {},
): Logger {
  const limit = options.rateLimit ?? DEFAULT_LOG_RATE_LIMIT;
  const pinoOptions = {
    level,
    base: { service: 'foresight' },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    ...(limit.lines > 0 ? { hooks: { logMethod: rateLimited(limit, options.now ?? (() => performance.now())) } } : {}),
  };
  return destination ? pino(pinoOptions, destination) : pino(pinoOptions);
}
