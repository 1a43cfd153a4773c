import { createActor, toPromise } from 'xstate';
import { createOpenAIAdvisor } from '../../src/adapters/openai.ts';
import { createFetchPokeClient, type PokeClient } from '../../src/adapters/poke-protocol.ts';
import { tickActors, tickMachine, type NudgeSender, type TickOutcome } from '../../src/machines/intervention.ts';
import { err, ok } from '../../src/result.ts';
import { d1Store } from './d1-store.ts';
import { settingsOf, type Env } from './env.ts';
import { log } from './log.ts';

/** The cron fires every minute: each tick reads the windows of the minute before it. */
export const TICK_PERIOD_MS = 60_000;
const POKE_ATTEMPTS = 3;

/**
 * Sends a nudge with the §6 retry rules, bounded to fit a cron invocation:
 * network errors, timeouts, 5xx, 408 and 429 are tried again (honouring a short
 * `Retry-After`), other answers are final.
 */
export function pokeNudges(client: PokeClient, apiKey: string | undefined, sleep = (ms: number) => scheduler.wait(ms)): NudgeSender {
  return {
    async send(message) {
      if (!apiKey) return err({ reason: 'Poke API key not configured' });
      let reason = 'Poke API unreachable';
      for (let attempt = 1; attempt <= POKE_ATTEMPTS; attempt++) {
        const result = await client.send(message, apiKey);
        if (result.ok) return ok(result.value);
        reason = result.error.reason;
        if (!result.error.retryable || attempt === POKE_ATTEMPTS) break;
        await sleep(Math.min(5_000, Math.max(result.error.retryAfterMs ?? 0, 500 * 2 ** (attempt - 1))));
      }
      return err({ reason });
    },
  };
}

/** One intervention tick (SPEC §6) against D1, with the OpenAI SDK and Poke over fetch. */
export async function runCronTick(env: Env, now: number): Promise<TickOutcome> {
  const settings = settingsOf(env);
  const store = d1Store(env.DB);
  const apiKey = env.OPENAI_API_KEY;
  const advisor = apiKey
    ? createOpenAIAdvisor({
        apiKey,
        model: settings.INTERVENTION_MODEL,
        ...(settings.OPENAI_BASE_URL ? { baseURL: settings.OPENAI_BASE_URL } : {}),
        timeoutMs: 25_000,
      })
    : { decide: async () => err({ kind: 'api' as const, message: 'OPENAI_API_KEY not configured' }) };
  const nudges = pokeNudges(createFetchPokeClient({ url: settings.POKE_API_URL }), env.POKE_API_KEY);
  const tick = createActor(tickMachine.provide({ actors: tickActors({ store, advisor, nudges }) }), {
    input: {
      now,
      periodMs: TICK_PERIOD_MS,
      nudgeCooldownMs: settings.INTERVENTION_NUDGE_COOLDOWN_S * 1000,
      enabled: apiKey !== undefined && apiKey !== '',
    },
  });
  const outcome = await toPromise(tick.start());
  log('cron', { msg: 'intervention tick', ...outcome });
  return outcome;
}
