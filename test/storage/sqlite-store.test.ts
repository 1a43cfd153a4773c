import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import {
  applyMigrations,
  defaultMigrationsDir,
  MIGRATIONS_TABLE,
  migrationFiles,
  openSqliteStore,
} from '../../src/adapters/sqlite-store.ts';

const dirs: string[] = [];
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'foresight-store-'));
  dirs.push(dir);
  return dir;
};
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const EXPECTED = [
  '0001_create_biometrics.sql',
  '0002_create_caption_windows.sql',
  '0003_create_interventions.sql',
  '0004_add_poke_columns_to_interventions.sql',
  '0005_convert_to_epoch_ms_schema.sql',
  '0006_intervention_ticks.sql',
];

/** The schema as SQLite reports it, without the bookkeeping table. */
const schemaOf = (db: DatabaseSync) =>
  db
    .prepare(`SELECT type, name, tbl_name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' AND name != ? ORDER BY name`)
    .all(MIGRATIONS_TABLE);

describe('migrations (SPEC §9)', () => {
  it('lists the numbered files in order', () => {
    expect(migrationFiles(defaultMigrationsDir())).toEqual(EXPECTED);
  });

  it('apply to an empty database, are recorded, and are a no-op the second time', () => {
    const path = join(tempDir(), 'nested', 'foresight.db');
    const first = openSqliteStore({ path });
    expect(first.applied).toEqual(EXPECTED);
    const recorded = first.db.prepare(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY id`).all();
    expect(recorded.map((r) => r.name)).toEqual(EXPECTED);
    const schema = schemaOf(first.db);
    first.close();

    const second = openSqliteStore({ path });
    expect(second.applied).toEqual([]);
    expect(schemaOf(second.db)).toEqual(schema);
    expect(second.db.prepare(`SELECT count(*) AS n FROM ${MIGRATIONS_TABLE}`).get()).toEqual({ n: EXPECTED.length });
    second.close();
  });

  it('applies only the missing ones to a database that has the first three', () => {
    const dir = tempDir();
    const partial = join(dir, 'partial');
    mkdirSync(partial);
    for (const name of EXPECTED.slice(0, 3)) copyFileSync(join(defaultMigrationsDir(), name), join(partial, name));
    const db = new DatabaseSync(join(dir, 'db.sqlite'));
    expect(applyMigrations(db, partial)).toEqual(EXPECTED.slice(0, 3));
    expect(applyMigrations(db, defaultMigrationsDir())).toEqual(EXPECTED.slice(3));
    db.close();
  });

  it('gives the schema D1 gets from the same files, each executed as a whole in order', () => {
    // wrangler d1 migrations apply runs each file's SQL as is, in name order, and records it
    // in d1_migrations; executing the files directly is that, minus the bookkeeping.
    const d1Like = new DatabaseSync(':memory:');
    for (const name of EXPECTED) d1Like.exec(readFileSync(join(defaultMigrationsDir(), name), 'utf8'));
    const store = openSqliteStore({ path: ':memory:' });
    expect(schemaOf(store.db)).toEqual(schemaOf(d1Like));
    expect(schemaOf(store.db).map((r) => r.name)).toEqual([
      'biometric_windows',
      'caption_windows',
      'idx_biometric_windows_created_at',
      'idx_caption_windows_created_at',
      'idx_intervention_ticks_nudged_at',
      'idx_interventions_created_at',
      'intervention_ticks',
      'interventions',
    ]);
    store.close();
    d1Like.close();
  });

  it('rolls back a failing migration and names it', () => {
    const dir = tempDir();
    writeFileSync(join(dir, '0001_ok.sql'), 'CREATE TABLE a (x INTEGER);');
    writeFileSync(join(dir, '0002_bad.sql'), 'CREATE TABLE b (x INTEGER); CREATE TABLE a (y INTEGER);');
    const db = new DatabaseSync(':memory:');
    expect(() => applyMigrations(db, dir)).toThrow(/migration 0002_bad.sql failed: table a already exists/);
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`).all();
    expect(tables.map((t) => t.name)).toEqual(['a', MIGRATIONS_TABLE, 'sqlite_sequence']);
    db.close();
  });

  it('has the columns the uploads and interventions need, defaults included', () => {
    const store = openSqliteStore({ path: ':memory:' });
    const columns = (table: string) => store.db.prepare(`PRAGMA table_info(${table})`).all().map((c) => c.name);
    expect(columns('interventions')).toEqual(expect.arrayContaining(['poke_message', 'poke_sent_at', 'biometric_ids', 'caption_ids']));
    store.db.exec(`INSERT INTO caption_windows (window_id, timestamp, chunk_start_s, chunk_end_s, caption) VALUES ('w', 1, 0, 1, 'c')`);
    const row = store.db.prepare('SELECT created_at FROM caption_windows').get() as { created_at: number };
    expect(Math.abs(row.created_at - Date.now())).toBeLessThan(60_000);
    store.close();
  });
});

describe('the store port', () => {
  it('inserts a batch of captions in one transaction: all, or none when one fails', async () => {
    const store = openSqliteStore({ path: ':memory:', now: () => 7_000 });
    const caption = (windowId: string) => ({ windowId, timestamp: 5, chunkStartS: 0, chunkEndS: 1, caption: 'a desk' });
    await store.insertCaptionWindow(caption('s-0'));
    expect(await store.insertCaptionWindows([caption('s-0'), caption('s-1')])).toEqual([
      { inserted: false, storedAt: 7_000 },
      { inserted: true, storedAt: 7_000 },
    ]);
    const broken = { ...caption('s-3'), caption: {} as unknown as string };
    await expect(store.insertCaptionWindows([caption('s-2'), broken])).rejects.toThrow(/cannot be bound/);
    expect((await store.windowsSince(0)).captions.map((c) => c.windowId)).toEqual(['s-0', 's-1']);
    // The failed batch left no transaction open.
    expect(await store.insertCaptionWindows([caption('s-2')])).toEqual([{ inserted: true, storedAt: 7_000 }]);
    store.close();
  });

  it('stores a window once per window id', async () => {
    let clock = 1_000;
    const store = openSqliteStore({ path: ':memory:', now: () => clock });
    const caption = { windowId: 's-0', timestamp: 5, chunkStartS: 0.1, chunkEndS: 0.9, caption: 'a desk', latencyMs: 300 };
    expect(await store.insertCaptionWindow(caption)).toEqual({ inserted: true, storedAt: 1_000 });
    clock = 2_000;
    expect(await store.insertCaptionWindow({ ...caption, caption: 'changed' })).toEqual({ inserted: false, storedAt: 2_000 });
    const { captions } = await store.windowsSince(0);
    expect(captions).toEqual([
      {
        id: 1,
        windowId: 's-0',
        timestamp: 5,
        chunkStartS: 0.1,
        chunkEndS: 0.9,
        caption: 'a desk',
        latencyMs: 300,
        tokensGenerated: null,
        createdAt: 1_000,
      },
    ]);
    store.close();
  });

  it('keeps biometric features and reads windows created since a time', async () => {
    let clock = 10_000;
    const store = openSqliteStore({ path: ':memory:', now: () => clock });
    await store.insertBiometricWindow({ windowId: 'b-1', timestamp: 1, durationMs: 60_000, qualityScore: 0.9, hrMean: 72 });
    clock = 70_000;
    await store.insertBiometricWindow({ windowId: 'b-2', timestamp: 2, durationMs: 60_000, riskPrediction: { stress: 0.7 }, hrv: 41.5 });
    const { biometrics } = await store.windowsSince(20_000);
    expect(biometrics).toEqual([
      {
        id: 2,
        windowId: 'b-2',
        timestamp: 2,
        durationMs: 60_000,
        qualityScore: null,
        riskPrediction: { stress: 0.7 },
        features: { hrv: 41.5 },
        createdAt: 70_000,
      },
    ]);
    store.close();
  });

  it('records interventions and lists the recent ones newest first', async () => {
    let clock = 100;
    const store = openSqliteStore({ path: ':memory:', now: () => clock });
    const base = {
      reasoning: 'r',
      biometricIds: [1, 2],
      captionIds: [3],
      model: 'gpt-4o-mini',
      promptTokens: 10,
      completionTokens: 5,
      totalTokens: 15,
    };
    await store.insertIntervention({ ...base, decision: 'no', nudge: null, pokeMessage: null, pokeSentAt: null });
    clock = 200;
    const id = await store.insertIntervention({ ...base, decision: 'yes', nudge: 'drink water', pokeMessage: 'say: drink water', pokeSentAt: 200 });
    const rows = await store.interventionsSince(0);
    expect(rows.map((r) => [r.id, r.decision, r.createdAt])).toEqual([[id, 'yes', 200], [1, 'no', 100]]);
    expect(rows[0]).toMatchObject({ biometricIds: [1, 2], captionIds: [3], pokeMessage: 'say: drink water', pokeSentAt: 200 });
    expect(await store.interventionsSince(150)).toHaveLength(1);
    store.close();
  });
});
