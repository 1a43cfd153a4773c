import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { createActor, fromPromise, waitFor } from 'xstate';
import type { DecisionRequest, DecisionResult } from '../../src/adapters/openai.ts';
import {
  defaultMigrationsDir,
  MIGRATIONS_TABLE,
  migrationFiles,
  openSqliteStore,
  SUPERSEDED_DIR,
} from '../../src/adapters/sqlite-store.ts';
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
} from '../fixtures/legacy-d1/rows.ts';

// In-place upgrade of a database made by the previous system's four migrations (the live D1,
// or a SQLite file made the same way), and of one made by this project's superseded ones.
// The Worker's tests do the same upgrade in workerd D1 (worker/test/upgrade.test.ts).

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
const tempDb = () => {
  const dir = mkdtempSync(join(tmpdir(), 'foresight-upgrade-'));
  dirs.push(dir);
  return join(dir, 'foresight.db');
};

/** What `wrangler d1 migrations apply` leaves: the files run in order, each recorded in d1_migrations. */
function migrateLikeWrangler(db: DatabaseSync, dir: string, names: readonly string[]): void {
  db.exec(`CREATE TABLE IF NOT EXISTS d1_migrations(
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
  )`);
  for (const name of names) {
    db.exec(readFileSync(join(dir, name), 'utf8'));
    db.prepare('INSERT INTO d1_migrations (name) VALUES (?)').run(name);
  }
}

/** A file made by the previous system, with its rows. */
function legacyDatabase(): string {
  const path = tempDb();
  const db = new DatabaseSync(path);
  migrateLikeWrangler(db, defaultMigrationsDir(), LEGACY_MIGRATIONS);
  for (const { sql, params } of LEGACY_ROWS) db.prepare(sql).run(...params);
  db.close();
  return path;
}

const tableRows = (db: DatabaseSync, table: string) =>
  (db.prepare(`SELECT * FROM ${table} ORDER BY id`).all() as Array<Record<string, unknown>>).map((r) => readable({ ...r }));
const freshSchema = () => {
  const fresh = openSqliteStore({ path: ':memory:' });
  const schema = fresh.db.prepare(SCHEMA_QUERY).all();
  fresh.close();
  return schema;
};

describe('upgrading the previous system’s database in place (SPEC §9)', () => {
  it('keeps every row, converted, and ends in the schema of a fresh database', () => {
    const path = legacyDatabase();
    const upgradedAt = Date.now();
    const store = openSqliteStore({ path });
    expect(store.applied).toEqual(migrationFiles(defaultMigrationsDir()).slice(LEGACY_MIGRATIONS.length));
    expect(store.applied[0]).toBe('0005_convert_to_epoch_ms_schema.sql');

    expect(tableRows(store.db, 'biometric_windows')).toEqual(UPGRADED.biometric_windows);
    expect(tableRows(store.db, 'interventions')).toEqual(UPGRADED.interventions);
    const captions = tableRows(store.db, 'caption_windows');
    expect(captions).toEqual([
      UPGRADED.caption_windows[0],
      { ...UPGRADED.caption_windows[1], created_at: expect.any(Number) },
      UPGRADED.caption_windows[2],
    ]);
    // The caption written with the old default datetime('now') (second precision) keeps its instant.
    expect(Math.abs(Number(captions[1]!.created_at) - upgradedAt)).toBeLessThan(5_000);

    expect(store.db.prepare(SCHEMA_QUERY).all()).toEqual(freshSchema());
    const recorded = store.db.prepare(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY id`).all().map((r) => r.name);
    expect(recorded).toEqual(migrationFiles(defaultMigrationsDir()));
    store.close();

    // Opening it again applies nothing.
    const again = openSqliteStore({ path });
    expect(again.applied).toEqual([]);
    again.close();
  });

  it('reads the upgraded rows through the store port as it reads new ones', async () => {
    const store = openSqliteStore({ path: legacyDatabase() });
    const { biometrics, captions } = await store.windowsSince(0);
    // Oldest first, by created_at.
    expect(biometrics.map((b) => b.id)).toEqual([5, 2, 1]);
    expect(biometrics[2]).toMatchObject({
      qualityScore: UPGRADED.biometric_windows[0]!.quality_score,
      riskPrediction: UPGRADED.biometric_windows[0]!.risk_prediction,
      features: UPGRADED.biometric_windows[0]!.features,
    });
    const caption = (id: number) => captions.find((c) => c.id === id);
    expect(caption(2)).toMatchObject({ timestamp: 3.5127, latencyMs: 640, tokensGenerated: 9 });
    expect(caption(1)).toMatchObject({ latencyMs: null, tokensGenerated: null });
    const [latest, earlier] = await store.interventionsSince(Date.UTC(2026, 0, 1, 0, 0, 1));
    expect(latest).toMatchObject({ id: 2, reasoning: 'Resting heart rate, nothing to say.', biometricIds: [], captionIds: [], pokeSentAt: null });
    expect(earlier).toMatchObject({ id: 1, reasoning: null, biometricIds: [1, 2], captionIds: [1], pokeSentAt: Date.UTC(2026, 0, 1, 0, 0, 20) });
    // New rows go on after the old ids.
    await store.insertBiometricWindow({ windowId: 'after-upgrade', timestamp: 1, durationMs: 0 });
    expect((await store.windowsSince(0)).biometrics.at(-1)).toMatchObject({ id: NEXT_BIOMETRIC_ID, windowId: 'after-upgrade' });
    store.close();
  });

  it('gives the intervention tick a window from before the upgrade and one from after in the same shape', async () => {
    const store = openSqliteStore({ path: legacyDatabase(), now: () => TICK_NOW - 10_000 });
    await store.insertBiometricWindow(JSON.parse(readFileSync(join(import.meta.dirname, '../fixtures/real-clients/app-accel-only.json'), 'utf8')));
    const requests: DecisionRequest[] = [];
    const advisor = {
      async decide(request: DecisionRequest) {
        requests.push(request);
        const decision: DecisionResult = { decision: 'no', reasoning: 'fine', nudge: null, model: 'm', promptTokens: null, completionTokens: null, totalTokens: null };
        return ok(decision);
      },
    };
    const actors = tickActors({ store, advisor, nudges: { send: async () => ok(null) } });
    const tick = createActor(
      tickMachine.provide({ actors: { ...actors, recordIntervention: fromPromise(async () => 3) } }),
      { input: { now: TICK_NOW, periodMs: 60_000, nudgeCooldownMs: 0 } },
    ).start();
    await waitFor(tick, (s) => s.status === 'done');
    store.close();

    const [request] = requests;
    // Created within the minute before the tick: legacy row 1 (00:01:05) and the new upload (00:01:20).
    const [before, after] = request!.biometrics as Array<Record<string, unknown>>;
    expect(before).toMatchObject({ id: 1, features: UPGRADED.biometric_windows[0]!.features });
    expect(after).toMatchObject({ id: NEXT_BIOMETRIC_ID, timestamp: 1_767_225_780_000 });
    expect(Object.keys(after!)).toEqual(Object.keys(before!));
    expect(Object.keys(after!.features as object)).toEqual(Object.keys(before!.features as object));
    expect(typeof (after!.riskPrediction as object)).toBe('object');
    expect(typeof (before!.riskPrediction as object)).toBe('object');
    // The intervention made before the upgrade is context for the model, its NULL reasoning kept.
    expect(request!.recentInterventions).toEqual([
      { createdAt: '2026-01-01T00:01:20.000Z', decision: 'no', reasoning: 'Resting heart rate, nothing to say.', nudge: null, sent: false },
      { createdAt: '2026-01-01T00:00:20.000Z', decision: 'yes', reasoning: null, nudge: null, sent: true },
      { createdAt: '2026-01-01T00:00:00.000Z', decision: 'yes', reasoning: 'Long screen time.', nudge: null, sent: true },
    ]);
  });
});

describe('adopting a database made by this project’s superseded migrations', () => {
  it('keeps every row and column, and ends where a fresh database is', async () => {
    const path = tempDb();
    const dir = join(defaultMigrationsDir(), SUPERSEDED_DIR);
    const superseded = migrationFiles(dir);
    expect(superseded).toHaveLength(5);
    const old = new DatabaseSync(path);
    // As the embedded store used to leave it: the first four applied, the index file not yet.
    migrateLikeWrangler(old, dir, superseded.slice(0, 4));
    old.exec(`INSERT INTO biometric_windows (window_id, timestamp, duration_ms, quality_score, risk_prediction, features, created_at)
      VALUES ('b-old', 1700000000000, 60000, 0.9, '{"stress":0.7}', '{"hrMean":72}', 1700000000500)`);
    old.exec(`INSERT INTO caption_windows (window_id, timestamp, chunk_start_s, chunk_end_s, caption, latency_ms, tokens_generated, created_at)
      VALUES ('c-old', 1700000000000, 1.5, 2.5, 'a kitchen', 420, 9, 1700000000600)`);
    // A caption deleted at the end: its id (2) must not be handed out again.
    old.exec(`INSERT INTO caption_windows (window_id, timestamp, chunk_start_s, chunk_end_s, caption) VALUES ('c-gone', 1, 0, 1, 'x')`);
    old.exec(`DELETE FROM caption_windows WHERE window_id = 'c-gone'`);
    // An index and a table of someone else's, left alone.
    old.exec(`CREATE TABLE notes (k TEXT); CREATE INDEX idx_notes_k ON notes (k); INSERT INTO notes VALUES ('kept')`);
    old.exec(`INSERT INTO interventions (decision, reasoning, nudge, biometric_ids, caption_ids, model, prompt_tokens, completion_tokens,
      total_tokens, poke_message, poke_sent_at, created_at)
      VALUES ('yes', 'r', 'drink water', '[1]', '[1]', 'gpt-4o-mini', 10, 5, 15, 'say: drink water', 1700000000700, 1700000000700)`);
    old.close();

    const store = openSqliteStore({ path });
    expect(store.applied).toEqual(migrationFiles(defaultMigrationsDir()));
    const ours = (rows: unknown[]) => (rows as Array<{ tbl_name: string }>).filter((r) => r.tbl_name !== 'notes');
    expect(ours(store.db.prepare(SCHEMA_QUERY).all())).toEqual(freshSchema());
    const recorded = store.db.prepare(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY id`).all().map((r) => r.name);
    expect(recorded).toEqual(migrationFiles(defaultMigrationsDir()));
    expect(tableRows(store.db, 'biometric_windows')).toEqual([
      { id: 1, window_id: 'b-old', timestamp: 1700000000000, duration_ms: 60000, quality_score: 0.9, risk_prediction: { stress: 0.7 }, features: { hrMean: 72 }, created_at: 1700000000500 },
    ]);
    expect(tableRows(store.db, 'caption_windows')).toEqual([
      { id: 1, window_id: 'c-old', timestamp: 1700000000000, chunk_start_s: 1.5, chunk_end_s: 2.5, caption: 'a kitchen', latency_ms: 420, tokens_generated: 9, created_at: 1700000000600 },
    ]);
    expect(tableRows(store.db, 'interventions')).toEqual([
      {
        id: 1, decision: 'yes', reasoning: 'r', nudge: 'drink water', biometric_ids: '[1]', caption_ids: '[1]', model: 'gpt-4o-mini',
        prompt_tokens: 10, completion_tokens: 5, total_tokens: 15, poke_message: 'say: drink water', poke_sent_at: 1700000000700, created_at: 1700000000700,
      },
    ]);
    expect(store.db.prepare(`SELECT k FROM notes`).all()).toEqual([{ k: 'kept' }]);
    expect(store.db.prepare(`SELECT name FROM sqlite_master WHERE name = 'idx_notes_k'`).all()).toHaveLength(1);
    await store.insertCaptionWindow({ windowId: 'c-new', timestamp: 1, chunkStartS: 0, chunkEndS: 1, caption: 'y' });
    expect((await store.windowsSince(0)).captions.at(-1)).toMatchObject({ id: 3, windowId: 'c-new' });
    store.close();
  });
});
