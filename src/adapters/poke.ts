import { Agent, errors, request } from 'undici';
import { err, ok, type Result } from '../result.ts';

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

/** Poke's inbound webhook over a pooled keep-alive agent (SPEC §6). */
export function createPokeClient(config: PokeClientConfig): PokeClient {
  const timeoutMs = config.timeoutMs ?? 10_000;
  const agent = new Agent({ connections: 4, connectTimeout: timeoutMs, headersTimeout: timeoutMs, bodyTimeout: timeoutMs });
  return {
    async send(message, apiKey, signal) {
      const timeout = AbortSignal.timeout(timeoutMs);
      try {
        const res = await request(config.url, {
          method: 'POST',
          dispatcher: agent,
          headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
          body: JSON.stringify({ message }),
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        });
        const text = await res.body.text(); // always drain, or the socket stays checked out
        if (res.statusCode < 300) {
          try {
            return ok(text === '' ? null : (JSON.parse(text) as unknown));
          } catch {
            return ok(text);
          }
        }
        const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
        return err({
          kind: 'http',
          status: res.statusCode,
          retryable: retryableStatus(res.statusCode),
          ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
          reason: `Poke API answered ${res.statusCode}`,
        });
      } catch (error) {
        if (timeout.aborted || error instanceof errors.HeadersTimeoutError || error instanceof errors.BodyTimeoutError) {
          return err({ kind: 'timeout', retryable: true, reason: `Poke API did not answer within ${timeoutMs} ms` });
        }
        return err({ kind: 'network', retryable: true, reason: 'Poke API unreachable' });
      }
    },
    close: () => agent.close(),
  };
}
