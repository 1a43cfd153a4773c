import { describe, expect, it } from 'vitest';
import type { PokeClient, PokeError } from '../../src/adapters/poke-protocol.ts';
import { err, ok, type Result } from '../../src/result.ts';
import { pokeNudges } from '../src/cron.ts';

/** A Poke client that answers from a script and records each attempt. */
function scripted(answers: Array<Result<unknown, PokeError>>) {
  const sent: Array<{ message: string; key: string }> = [];
  const client: PokeClient = {
    send: async (message, key) => {
      sent.push({ message, key });
      return answers.shift() ?? ok(null);
    },
    close: async () => undefined,
  };
  return { client, sent };
}

const http = (status: number, retryAfterMs?: number): Result<never, PokeError> =>
  err({ kind: 'http', status, retryable: status >= 500 || status === 429, reason: `Poke API answered ${status}`, ...(retryAfterMs ? { retryAfterMs } : {}) });

describe("the cron's Poke nudges", () => {
  it('retries a 5xx and a 429 (honouring Retry-After), then delivers', async () => {
    const { client, sent } = scripted([http(503), http(429, 2_000), ok({ id: 1 })]);
    const waits: number[] = [];
    const nudges = pokeNudges(client, 'pk', async (ms) => void waits.push(ms));
    expect(await nudges.send('hi')).toEqual({ ok: true, value: { id: 1 } });
    expect(sent).toHaveLength(3);
    expect(waits).toEqual([500, 2_000]);
  });

  it('does not retry a 400 and gives up after three attempts', async () => {
    const once = scripted([http(400)]);
    expect(await pokeNudges(once.client, 'pk', async () => undefined).send('hi')).toEqual({
      ok: false,
      error: { reason: 'Poke API answered 400' },
    });
    expect(once.sent).toHaveLength(1);
    const down = scripted([http(502), http(502), http(502), ok(null)]);
    expect(await pokeNudges(down.client, 'pk', async () => undefined).send('hi')).toEqual({
      ok: false,
      error: { reason: 'Poke API answered 502' },
    });
    expect(down.sent).toHaveLength(3);
  });

  it('sends nothing without a key', async () => {
    const { client, sent } = scripted([]);
    expect(await pokeNudges(client, undefined).send('hi')).toEqual({ ok: false, error: { reason: 'Poke API key not configured' } });
    expect(sent).toEqual([]);
  });
});
