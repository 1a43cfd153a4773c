import { describe, expect, it } from 'vitest';
import { createActor, fromCallback, SimulatedClock, waitFor } from 'xstate';
import { parseRetryAfter, type PokeClient, type PokeError } from '../../src/adapters/poke.ts';
import { deliveryMachine, pokeSenderWith, postPokeActor, type PokeOutcome } from '../../src/machines/poke.ts';
import { supervisorMachine } from '../../src/machines/supervisor.ts';
import { err, ok, type Result } from '../../src/result.ts';

/** A Poke client whose answers the test scripts, one per call. */
function scripted(answers: Array<Result<unknown, PokeError>>): PokeClient & { calls: number } {
  const client = {
    calls: 0,
    send: async () => answers[Math.min(client.calls++, answers.length - 1)]!,
    close: async () => undefined,
  };
  return client;
}

const http = (status: number, retryAfterMs?: number): Result<unknown, PokeError> =>
  err({ kind: 'http', status, retryable: status >= 500 || status === 429, reason: `Poke API answered ${status}`, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) });

function deliver(client: PokeClient, random = () => 1) {
  const clock = new SimulatedClock();
  const actor = createActor(deliveryMachine.provide({ actors: { postPoke: postPokeActor(client) } }), {
    input: { requestId: 'r1', message: 'hi', apiKey: 'k', policy: { maxAttempts: 4, baseDelayMs: 500, maxDelayMs: 30_000 }, random },
    clock,
  }).start();
  return { actor, clock };
}

describe('delivery machine', () => {
  it('backs off exponentially between retries', async () => {
    const client = scripted([http(503), http(502), ok({ id: 1 })]);
    const { actor, clock } = deliver(client);
    await waitFor(actor, (s) => s.matches('waiting'));
    clock.increment(499);
    expect(actor.getSnapshot().value).toBe('waiting');
    clock.increment(1); // 500 ms after the first failure
    await waitFor(actor, (s) => s.matches('waiting') && s.context.attempts === 2);
    clock.increment(999);
    expect(actor.getSnapshot().value).toBe('waiting');
    clock.increment(1); // then 1000 ms
    await waitFor(actor, (s) => s.status === 'done');
    expect(actor.getSnapshot().output).toEqual<PokeOutcome>({ ok: true, data: { id: 1 }, attempts: 3 });
  });

  it('jitters the backoff down to half', async () => {
    const { actor } = deliver(scripted([http(503), ok(null)]), () => 0);
    await waitFor(actor, (s) => s.matches('waiting'));
    expect(actor.getSnapshot().context.retryDelayMs).toBe(250);
    actor.stop();
  });

  it('waits as long as Retry-After asks when that is longer', async () => {
    const { actor, clock } = deliver(scripted([http(429, 5_000), ok('sent')]));
    await waitFor(actor, (s) => s.matches('waiting'));
    clock.increment(4_999);
    expect(actor.getSnapshot().value).toBe('waiting');
    clock.increment(1);
    await waitFor(actor, (s) => s.status === 'done');
    expect(actor.getSnapshot().output).toMatchObject({ ok: true, data: 'sent', attempts: 2 });
  });

  it('does not retry a 4xx other than 408 and 429', async () => {
    const client = scripted([http(401)]);
    const { actor } = deliver(client);
    await waitFor(actor, (s) => s.status === 'done');
    expect(client.calls).toBe(1);
    expect(actor.getSnapshot().output).toEqual({ ok: false, reason: 'Poke API answered 401', status: 401, attempts: 1 });
  });

  it('gives up after maxAttempts with the last reason', async () => {
    const client = scripted([err({ kind: 'network', retryable: true, reason: 'Poke API unreachable' })]);
    const { actor, clock } = deliver(client);
    for (let i = 0; i < 3; i++) {
      await waitFor(actor, (s) => s.matches('waiting'));
      clock.increment(30_000);
    }
    await waitFor(actor, (s) => s.status === 'done');
    expect(client.calls).toBe(4);
    expect(actor.getSnapshot().output).toEqual({ ok: false, reason: 'Poke API unreachable', attempts: 4 });
  });
});

describe('Poke sender', () => {
  it('answers each request by its id, refusing past the queue bound', async () => {
    let release: (() => void) | undefined;
    const client: PokeClient = {
      send: () => new Promise((resolve) => (release = () => resolve(ok({ done: true })))),
      close: async () => undefined,
    };
    const sender = createActor(pokeSenderWith(client), { input: { concurrency: 1, maxQueue: 1 } }).start();
    const results: Array<{ requestId: string; outcome: PokeOutcome }> = [];
    sender.on('poke.result', ({ requestId, outcome }) => results.push({ requestId, outcome }));
    for (const id of ['a', 'b', 'c']) sender.send({ type: 'poke.send', requestId: id, message: id, apiKey: 'k' });
    expect(results).toEqual([{ requestId: 'c', outcome: { ok: false, reason: 'Poke queue full', attempts: 0, queueFull: true } }]);
    expect(sender.getSnapshot().context).toMatchObject({ active: 1, queue: [{ requestId: 'b' }], refused: 1 });
    release!();
    await waitFor(sender, (s) => s.context.sent === 1);
    release!();
    await waitFor(sender, (s) => s.context.sent === 2 && s.context.active === 0);
    expect(results.map((r) => r.requestId)).toEqual(['c', 'a', 'b']);
    sender.stop();
  });
});

describe('supervisor', () => {
  it('restarts a crashed Poke sender (permanent child) after a backoff, then gives up past the budget', async () => {
    const clock = new SimulatedClock();
    let starts = 0;
    const crashing = fromCallback(() => {
      starts += 1;
      throw new Error('boom');
    });
    const actor = createActor(supervisorMachine.provide({ actors: { pokeSender: crashing as never }, delays: { restartBackoff: 1_000 } }), {
      input: { maxRestarts: 2 },
      clock,
    }).start();
    expect(actor.getSnapshot().matches({ poke: 'restarting' })).toBe(true);
    clock.increment(1_000);
    clock.increment(1_000);
    expect(actor.getSnapshot().matches({ poke: 'failed' })).toBe(true);
    expect(starts).toBe(3);
    expect(actor.getSnapshot().matches({ sessions: 'running' })).toBe(true);
    actor.stop();
  });
});

describe('parseRetryAfter', () => {
  it('reads seconds and HTTP dates, and ignores the rest', () => {
    expect(parseRetryAfter('3')).toBe(3_000);
    expect(parseRetryAfter('Wed, 25 Nov 2026 12:00:10 GMT', Date.parse('Wed, 25 Nov 2026 12:00:00 GMT'))).toBe(10_000);
    expect(parseRetryAfter(undefined)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
  });
});
