import { err, ok, type Result } from '../result.ts';
import { limitResponse, ResponseTooLargeError } from './bounded-fetch.ts';

// What the Node client (undici) and the Worker's (fetch) share about Poke's webhook.

/** A failed delivery: what happened, whether trying again can help, and how long the server asked us to wait. */
export interface PokeError {
  kind: 'http' | 'network' | 'timeout';
  status?: number;
  retryable: boolean;
  /** From a `Retry-After` header, in ms. */
  retryAfterMs?: number;
  /** Short and safe to show a client: never the key, never the raw SDK message. */
  reason: string;
}

/** The role the Poke sender needs: deliver one message with a key. */
export interface PokeClient {
  send(message: string, apiKey: string, signal?: AbortSignal): Promise<Result<unknown, PokeError>>;
  close(): Promise<void>;
}

export interface PokeClientConfig {
  url: string;
  timeoutMs?: number;
}

/** `Retry-After` as seconds or an HTTP date, in ms from now; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === '') return undefined;
  const seconds = Number(text);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

const retryableStatus = (status: number) => status >= 500 || status === 429 || status === 408;

/**
 * The longest answer body read from Poke, in bytes. A longer one is not read:
 * its status still counts (a 2xx is a delivery, answered with `null`, so the
 * message is not sent twice).
 */
export const MAX_POKE_RESPONSE_BYTES = 65_536;

/**
 * Reads Poke's answer: 2xx is the delivery (JSON when it parses, `null` when
 * empty or longer than MAX_POKE_RESPONSE_BYTES: `text` undefined), anything
 * else a typed failure.
 */
export function answerOf(status: number, text: string | undefined, retryAfterMs: number | undefined): Result<unknown, PokeError> {
  if (status < 300) {
    if (text === undefined) return ok(null);
    try {
      return ok(text === '' ? null : (JSON.parse(text) as unknown));
    } catch {
      return ok(text);
    }
  }
  return err({
    kind: 'http',
    status,
    retryable: retryableStatus(status),
    ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    reason: `Poke API answered ${status}`,
  });
}

/** Poke's webhook over the platform's `fetch` (workerd has no undici); same answers as the Node client. */
export function createFetchPokeClient(config: PokeClientConfig & { fetch?: typeof fetch }): PokeClient {
  const timeoutMs = config.timeoutMs ?? 10_000;
  return {
    async send(message, apiKey, signal) {
      const timeout = AbortSignal.timeout(timeoutMs);
      try {
        const res = await (config.fetch ?? fetch)(config.url, {
          method: 'POST',
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ message }),
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        });
        let text: string | undefined;
        try {
          text = await limitResponse(res, MAX_POKE_RESPONSE_BYTES).text();
        } catch (error) {
          if (!(error instanceof ResponseTooLargeError)) throw error;
        }
        return answerOf(res.status, text, parseRetryAfter(res.headers.get('retry-after') ?? undefined));
      } catch {
        if (timeout.aborted) return err({ kind: 'timeout', retryable: true, reason: `Poke API did not answer within ${timeoutMs} ms` });
        return err({ kind: 'network', retryable: true, reason: 'Poke API unreachable' });
      }
    },
    close: async () => undefined,
  };
}
