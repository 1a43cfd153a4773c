import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createActor, toPromise } from 'xstate';
import type { DecisionResult } from '../../src/adapters/openai.ts';
import { openSqliteStore } from '../../src/adapters/sqlite-store.ts';
import type { Store } from '../../src/adapters/store.ts';
import { tickActors, tickMachine, type TickOutcome } from '../../src/machines/intervention.ts';
import { ok } from '../../src/result.ts';

// Finding 7: two servers on one DATABASE_PATH (or the Worker's cron beside a container left
// with its ticker on) both ticked the same period and both sent a nudge. Each tick now claims
// its period in the store before asking the model, and the nudge's cooldown in one statement.

const NOW = Date.UTC(2026, 10, 29, 12, 0, 30);
const dirs: string[] = [];
const stores: Store[] = [];
afterEach(() => {
  for (const store of stores.splice(0)) void store.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Two servers' stores on one database file. */
function twoStores(): [Store, Store] {
  const dir = mkdtempSync(join(tmpdir(), 'foresight-ticks-'));
  dirs.push(dir);
  const path = join(dir, 'foresight.db');
  const a = openSqliteStore({ path, now: () => NOW - 10_000 });
  const b = openSqliteStore({ path, now: () => NOW - 10_000 });
  stores.push(a, b);
  return [a, b];
}

function ticker(store: Store, sent: string[], asked: { count: number }) {
  const advisor = {
    async decide() {
      asked.count += 1;
      const decision: DecisionResult = { decision: 'yes', reasoning: 'r', nudge: 'Take a walk.', model: 'm', promptTokens: 1, completionTokens: 1, totalTokens: 2 };
      return ok(decision);
    },
  };
  const nudges = {
    async send(message: string) {
      sent.push(message);
      return ok({ queued: true });
    },
  };
  return (now: number): Promise<TickOutcome> =>
    toPromise(
      createActor(tickMachine.provide({ actors: tickActors({ store, advisor, nudges }) }), {
        input: { now, periodMs: 60_000, nudgeCooldownMs: 300_000 },
      }).start(),
    ) as Promise<TickOutcome>;
}

describe('tick claims (finding 7)', () => {
  it('runs one tick per period and sends one nudge, however many tickers share the store', async () => {
    const [a, b] = twoStores();
    await a.insertBiometricWindow({ windowId: 'w1', timestamp: NOW - 10_000, durationMs: 60_000, hrMean: 130 });
    const sent: string[] = [];
    const asked = { count: 0 };
    const outcomes = await Promise.all([ticker(a, sent, asked)(NOW), ticker(b, sent, asked)(NOW + 5)]);
    expect(outcomes.map((o) => o.status).sort()).toEqual(['recorded', 'taken']);
    expect(asked.count).toBe(1);
    expect(sent).toHaveLength(1);
    expect(await a.interventionsSince(0)).toHaveLength(1);
  });

  it('keeps the nudge cooldown across tickers: the next period asks, but does not send', async () => {
    const [a, b] = twoStores();
    await a.insertBiometricWindow({ windowId: 'w1', timestamp: NOW - 10_000, durationMs: 60_000, hrMean: 130 });
    const sent: string[] = [];
    const asked = { count: 0 };
    // The other ticker ticks 40 s later: a period of its own, the same window of data, and both
    // ask the model before either has recorded anything.
    const outcomes = await Promise.all([ticker(a, sent, asked)(NOW), ticker(b, sent, asked)(NOW + 40_000)]);
    expect(outcomes.map((o) => o.status)).toEqual(['recorded', 'recorded']);
    expect(outcomes.map((o) => (o as { nudged: boolean }).nudged).sort()).toEqual([false, true]);
    expect(asked.count).toBe(2);
    expect(sent).toHaveLength(1);
    // Past the cooldown, a nudge may go again.
    const later = openSqliteStore({ path: (a as unknown as { db: { location(): string } }).db.location(), now: () => NOW + 400_000 });
    stores.push(later);
    await later.insertBiometricWindow({ windowId: 'w3', timestamp: NOW + 400_000, durationMs: 60_000, hrMean: 131 });
    expect(await ticker(later, sent, asked)(NOW + 420_000)).toMatchObject({ status: 'recorded', nudged: true });
    expect(sent).toHaveLength(2);
  });
});
