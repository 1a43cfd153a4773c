import { applyD1Migrations } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { createActor, fromPromise, waitFor } from 'xstate';
import type { DecisionRequest } from '../../src/adapters/openai.ts';
import { tickActors, tickMachine } from '../../src/machines/intervention.ts';
import { ok } from '../../src/result.ts';
import {
  LEGACY_MIGRATIONS,
  LEGACY_ROWS,
  NEXT_BIOMETRIC_ID,
  readable,
  SCHEMA_QUERY,
  TICK_NOW,
  UPGRADED,
} from '../../test/fixtures/legacy-d1/rows.ts';
import { d1Store } from '../src/d1-store.ts';
import { testEnv } from './helpers.ts';

// `wrangler d1 migrations apply foresight-biometrics` on the live D1: the previous system's four
// migrations are recorded there with rows in their tables; applying this project's migrations
// runs only 0005, one batch, as wrangler does. The embedded store's test does the same in
// node:sqlite (test/storage/upgrade.test.ts).

const all = async (db: D1Database, sql: string) => (await db.prepare(sql).all<Record<string, unknown>>()).results;

describe('upgrading the live D1 in place (SPEC §9)', () => {
  it('keeps every row, converted, and ends in the schema of a fresh database; the tick reads old and new rows alike', async () => {
    const db = testEnv.LEGACY_DB;
    const legacy = testEnv.TEST_MIGRATIONS.filter((m) => (LEGACY_MIGRATIONS as readonly string[]).includes(m.name));
    expect(legacy.map((m) => m.name)).toEqual(LEGACY_MIGRATIONS);
    await applyD1Migrations(db, legacy);
    await db.batch(LEGACY_ROWS.map(({ sql, params }) => db.prepare(sql).bind(...params)));
    const upgradedAt = Date.now();

    await applyD1Migrations(db, testEnv.TEST_MIGRATIONS);

    const recorded = await all(db, 'SELECT name FROM d1_migrations ORDER BY id');
    expect(recorded.map((r) => r.name)).toEqual(testEnv.TEST_MIGRATIONS.map((m) => m.name));
    const schema = await all(db, SCHEMA_QUERY);
    expect(schema).toEqual(await all(testEnv.DB, SCHEMA_QUERY));
    expect(schema.map((r) => r.name)).toEqual([
      'idx_biometric_windows_created_at',
      'idx_caption_windows_created_at',
      'idx_intervention_ticks_nudged_at',
      'idx_interventions_created_at',
      'biometric_windows',
      'caption_windows',
      'intervention_ticks',
      'interventions',
    ]);
    const rows = async (table: string) => (await all(db, `SELECT * FROM ${table} ORDER BY id`)).map(readable);
    expect(await rows('biometric_windows')).toEqual(UPGRADED.biometric_windows);
    expect(await rows('interventions')).toEqual(UPGRADED.interventions);
    const captions = await rows('caption_windows');
    expect(captions).toEqual([
      UPGRADED.caption_windows[0],
      { ...UPGRADED.caption_windows[1], created_at: expect.any(Number) },
      UPGRADED.caption_windows[2],
    ]);
    expect(Math.abs(Number(captions[1]!.created_at) - upgradedAt)).toBeLessThan(5_000);

    // A window uploaded after the upgrade reaches the model's prompt in the shape of one from before.
    const store = d1Store(db, () => TICK_NOW - 10_000);
    await store.insertBiometricWindow({ windowId: 'after-upgrade', timestamp: 1_767_225_780_000, durationMs: 60_000, qualityScore: 0.8, hrMean: 70 });
    const requests: DecisionRequest[] = [];
    const advisor = {
      async decide(request: DecisionRequest) {
        requests.push(request);
        return ok({ decision: 'no' as const, reasoning: 'fine', nudge: null, model: 'm', promptTokens: null, completionTokens: null, totalTokens: null });
      },
    };
    const actors = tickActors({ store, advisor, nudges: { send: async () => ok(null) } });
    const tick = createActor(tickMachine.provide({ actors: { ...actors, recordIntervention: fromPromise(async () => 3) } }), {
      input: { now: TICK_NOW, periodMs: 60_000, nudgeCooldownMs: 0 },
    }).start();
    await waitFor(tick, (s) => s.status === 'done');
    const [before, after] = requests[0]!.biometrics as Array<Record<string, unknown>>;
    expect(before).toMatchObject({ id: 1, features: UPGRADED.biometric_windows[0]!.features, riskPrediction: UPGRADED.biometric_windows[0]!.risk_prediction });
    expect(after).toMatchObject({ id: NEXT_BIOMETRIC_ID, features: { hrMean: 70 }, riskPrediction: null, qualityScore: 0.8 });
    expect(Object.keys(after!)).toEqual(Object.keys(before!));
    expect(requests[0]!.recentInterventions).toHaveLength(3);
  });
});
