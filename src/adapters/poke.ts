import { Agent, errors, request } from 'undici';
import { err } from '../result.ts';
import { answerOf, MAX_POKE_RESPONSE_BYTES, parseRetryAfter, type PokeClient, type PokeClientConfig } from './poke-protocol.ts';

export { parseRetryAfter, type PokeClient, type PokeClientConfig, type PokeError } from './poke-protocol.ts';

/** Poke's inbound webhook over a pooled keep-alive agent (SPEC §6). */
export function createPokeClient(config: PokeClientConfig): PokeClient {
  const timeoutMs = config.timeoutMs ?? 10_000;
  const agent = new Agent({
    connections: 4,
    connectTimeout: timeoutMs,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    // undici stops reading past this and drops the connection (`request` does not decompress: these are the bytes buffered).
    maxResponseSize: MAX_POKE_RESPONSE_BYTES,
  });
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
        let text: string | undefined;
        try {
          text = await res.body.text(); // always drain, or the socket stays checked out
        } catch (error) {
          if (!(error instanceof errors.ResponseExceededMaxSizeError)) throw error;
        }
        return answerOf(res.statusCode, text, parseRetryAfter(res.headers['retry-after']));
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
