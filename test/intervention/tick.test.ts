import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createActor, fromPromise, SimulatedClock, waitFor } from 'xstate';
import { createOpenAIAdvisor } from '../../src/adapters/openai.ts';
import { createPokeClient } from '../../src/adapters/poke.ts';
import { openSqliteStore } from '../../src/adapters/sqlite-store.ts';
import {
  tickActors,
  tickerMachine,
  tickMachine,
  VERBATIM_PREFIX,
  type NudgeSender,
  type TickOutcome,
} from '../../src/machines/intervention.ts';
import { err, ok } from '../../src/result.ts';
import { FakeHttpServer, type ReceivedRequest } from '../fakes/http-server.ts';

const NOW = Date.UTC(2026, 10, 25, 12, 0, 0);
const fakes: FakeHttpServer[] = [];
const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  for (const fake of fakes.splice(0)) await fake.stop();
});

const completion = (content: string, refusal: string | null = null) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini-2024-07-18',
  choices: [{ index: 0, message: { role: 'assistant', content, refusal }, finish_reason: 'stop', logprobs: null }],
  usage: { prompt_tokens: 120, completion_tokens: 30, total_tokens: 150 },
});

const answer = (decision: 'yes' | 'no', nudge: string | null) =>
  JSON.stringify(completion(JSON.stringify({ decision, reasoning: `said ${decision}`, nudge })));

async function fixture(openaiRespond: (req: ReceivedRequest, res: ServerResponse) => void, pokeStatus = 200) {
  const openai = new FakeHttpServer();
  openai.respond = openaiRespond;
  const poke = new FakeHttpServer();
  poke.respond = (_req, res) => res.writeHead(pokeStatus, { 'content-type': 'application/json' }).end('{"queued":true}');
  fakes.push(openai, poke);
  const openaiUrl = await openai.start();
  const pokeUrl = await poke.start();
  let clock = NOW - 30_000;
  const store = openSqliteStore({ path: ':memory:', now: () => clock });
  closers.push(() => store.close());
  const advisor = createOpenAIAdvisor({ apiKey: 'sk-test', baseURL: `${openaiUrl}/v1`, model: 'gpt-4o-mini' });
  const pokeClient = createPokeClient({ url: `${pokeUrl}/webhook`, timeoutMs: 2_000 });
  closers.push(() => pokeClient.close());
  const nudges: NudgeSender = {
    async send(message) {
      const result = await pokeClient.send(message, 'poke-key');
      return result.ok ? ok(result.value) : err({ reason: result.error.reason });
    },
  };
  const tick = async (now = NOW): Promise<TickOutcome> => {
    const actor = createActor(tickMachine.provide({ actors: tickActors({ store, advisor, nudges }) }), {
      input: { now, periodMs: 60_000, nudgeCooldownMs: 300_000 },
    }).start();
    const done = await waitFor(actor, (s) => s.status === 'done');
    return done.output as TickOutcome;
  };
  const addWindows = async () => {
    await store.insertBiometricWindow({ windowId: `b-${clock}`, timestamp: clock, durationMs: 60_000, qualityScore: 0.9, hr: 118 });
    await store.insertCaptionWindow({ windowId: `c-${clock}`, timestamp: clock, chunkStartS: 1, chunkEndS: 2, caption: 'a laptop late at night' });
  };
  return { openai, poke, store, tick, addWindows, setClock: (t: number) => (clock = t) };
}

const jsonOk = (body: string) => (_req: ReceivedRequest, res: ServerResponse) =>
  res.writeHead(200, { 'content-type': 'application/json' }).end(body);

describe('intervention tick (SPEC §6), real SDK and undici against loopback fakes', () => {
  it('skips the model when no window was created in the last period', async () => {
    const f = await fixture(jsonOk(answer('no', null)));
    expect(await f.tick()).toEqual({ status: 'skipped' });
    expect(f.openai.received).toHaveLength(0);
    expect(await f.store.interventionsSince(0)).toEqual([]);
  });

  it('on yes with a nudge sends it through Poke, prefixed, and records the intervention', async () => {
    const f = await fixture(jsonOk(answer('yes', 'Time for a short break and some water.')));
    await f.addWindows();
    const outcome = await f.tick();
    expect(outcome).toMatchObject({ status: 'recorded', decision: 'yes', nudged: true, pokeError: null });

    const [request] = f.openai.received;
    expect(request).toMatchObject({ method: 'POST', path: '/v1/chat/completions', headers: { authorization: 'Bearer sk-test' } });
    const body = request!.body as { model: string; response_format: { type: string; json_schema: { name: string; strict: boolean } }; messages: Array<{ content: string }> };
    expect(body.model).toBe('gpt-4o-mini');
    expect(body.response_format).toMatchObject({ type: 'json_schema', json_schema: { name: 'intervention_decision', strict: true } });
    const asked = JSON.parse(body.messages[1]!.content) as { captions: Array<{ caption: string }>; biometrics: Array<{ features: unknown }> };
    expect(asked.captions.map((c) => c.caption)).toEqual(['a laptop late at night']);
    expect(asked.biometrics[0]!.features).toEqual({ hr: 118 });

    expect(f.poke.received).toHaveLength(1);
    expect(f.poke.received[0]!.body).toEqual({ message: `${VERBATIM_PREFIX}Time for a short break and some water.` });
    expect(f.poke.received[0]!.headers.authorization).toBe('Bearer poke-key');

    const [row] = await f.store.interventionsSince(0);
    expect(row).toMatchObject({
      decision: 'yes',
      reasoning: 'said yes',
      nudge: 'Time for a short break and some water.',
      biometricIds: [1],
      captionIds: [1],
      model: 'gpt-4o-mini-2024-07-18',
      promptTokens: 120,
      completionTokens: 30,
      totalTokens: 150,
      pokeMessage: `${VERBATIM_PREFIX}Time for a short break and some water.`,
      pokeSentAt: NOW,
    });
  });

  it('on no records the intervention without calling Poke', async () => {
    const f = await fixture(jsonOk(answer('no', null)));
    await f.addWindows();
    expect(await f.tick()).toMatchObject({ status: 'recorded', decision: 'no', nudged: false });
    expect(f.poke.received).toHaveLength(0);
    expect(await f.store.interventionsSince(0)).toMatchObject([{ decision: 'no', pokeMessage: null, pokeSentAt: null }]);
  });

  it('does not nudge again within the cooldown, and shows the model what it said before', async () => {
    const f = await fixture(jsonOk(answer('yes', 'Stand up and stretch.')));
    await f.addWindows();
    await f.tick(NOW);
    f.setClock(NOW + 90_000);
    await f.addWindows();
    const second = await f.tick(NOW + 120_000);
    expect(second).toMatchObject({ status: 'recorded', decision: 'yes', nudged: false });
    expect(f.poke.received).toHaveLength(1);
    const asked = JSON.parse((f.openai.received[1]!.body as { messages: Array<{ content: string }> }).messages[1]!.content) as {
      recentInterventions: Array<{ nudge: string; sent: boolean }>;
    };
    expect(asked.recentInterventions).toEqual([expect.objectContaining({ nudge: 'Stand up and stretch.', sent: true })]);
    const rows = await f.store.interventionsSince(0);
    expect(rows[0]).toMatchObject({ decision: 'yes', pokeSentAt: null });
  });

  it.each([
    ['an API error', (_req: ReceivedRequest, res: ServerResponse) => res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"bad"}}'), 'model: api: OpenAI answered 400'],
    ['a malformed answer', jsonOk(JSON.stringify(completion('{"decision":"maybe"}'))), 'model: malformed: the model answer could not be parsed'],
    ['a refusal', jsonOk(JSON.stringify(completion('', 'I cannot help with that.'))), 'model: refusal: the model refused'],
    ['an answer over 1 MiB', jsonOk(JSON.stringify(completion('x'.repeat(2_000_000)))), "model: malformed: OpenAI's answer is longer than 1048576 bytes"],
  ])('fails the tick on %s, without Poke and without a row', async (_name, respond, error) => {
    const f = await fixture(respond);
    await f.addWindows();
    expect(await f.tick()).toEqual({ status: 'failed', error });
    expect(f.poke.received).toHaveLength(0);
    expect(await f.store.interventionsSince(0)).toEqual([]);
  });

  it('a 503 with a body over 1 MiB is still retried once and reported as the 503 it is', async () => {
    const f = await fixture((_req, res) => {
      const body = `{"error":{"message":"${'x'.repeat(2_000_000)}"}}`;
      res.writeHead(503, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    });
    await f.addWindows();
    expect(await f.tick()).toEqual({ status: 'failed', error: 'model: api: OpenAI answered 503' });
    expect(f.openai.received).toHaveLength(2);
  });

  it('still records the decision when Poke fails, with no sent time', async () => {
    const f = await fixture(jsonOk(answer('yes', 'Breathe.')), 400);
    await f.addWindows();
    expect(await f.tick()).toMatchObject({ status: 'recorded', nudged: false, pokeError: 'Poke API answered 400' });
    expect(await f.store.interventionsSince(0)).toMatchObject([{ decision: 'yes', pokeMessage: null, pokeSentAt: null }]);
  });
});

describe('intervention ticker', () => {
  const controllable = () => {
    const pending: Array<(outcome: TickOutcome) => void> = [];
    const starts: number[] = [];
    const tick = fromPromise<TickOutcome, { now: number }>(
      ({ input }) =>
        new Promise((resolve) => {
          starts.push(input.now);
          pending.push(resolve);
        }),
    );
    return { tick, pending, starts };
  };

  it('sits in disabled without a key', () => {
    const actor = createActor(tickerMachine, { input: { enabled: false, periodMs: 60_000, nudgeCooldownMs: 0 } }).start();
    expect(actor.getSnapshot().value).toBe('disabled');
    actor.stop();
  });

  it('ticks every period, skips and counts a tick due while one still runs, and runs the next after a failure', async () => {
    const clock = new SimulatedClock();
    const { tick, pending, starts } = controllable();
    let now = 0;
    const actor = createActor(tickerMachine.provide({ actors: { tick: tick as never } }), {
      input: { enabled: true, periodMs: 60_000, nudgeCooldownMs: 0, now: () => now },
      clock,
    }).start();
    expect(starts).toEqual([]);
    now = 60_000;
    clock.increment(60_000);
    expect(starts).toEqual([60_000]);
    now = 120_000;
    clock.increment(60_000); // the first tick is still running
    expect(starts).toEqual([60_000]);
    expect(actor.getSnapshot().context.skippedOverlaps).toBe(1);
    pending[0]!({ status: 'failed', error: 'model: api: OpenAI answered 500' });
    await waitFor(actor, (s) => s.context.ticks === 1);
    expect(actor.getSnapshot().context.failures).toBe(1);
    now = 180_000;
    clock.increment(60_000);
    expect(starts).toEqual([60_000, 180_000]);
    pending[1]!({ status: 'skipped' });
    await waitFor(actor, (s) => s.context.ticks === 2);
    expect(actor.getSnapshot().context.lastOutcome).toEqual({ status: 'skipped' });
    actor.stop();
  });
});

describe('intervention tick without a key', () => {
  it('ends disabled without reading the store or calling anyone', async () => {
    const calls: string[] = [];
    const never = (name: string) => fromPromise(async () => {
      calls.push(name);
      throw new Error('not expected');
    });
    const actor = createActor(
      tickMachine.provide({
        actors: {
          collectWindows: never('collectWindows') as never,
          askForNudge: never('askForNudge') as never,
          sendNudge: never('sendNudge') as never,
          recordIntervention: never('recordIntervention') as never,
        },
      }),
      { input: { now: NOW, periodMs: 60_000, nudgeCooldownMs: 0, enabled: false } },
    ).start();
    expect(actor.getSnapshot().status).toBe('done');
    expect(actor.getSnapshot().output).toEqual({ status: 'disabled' });
    expect(calls).toEqual([]);
  });
});
