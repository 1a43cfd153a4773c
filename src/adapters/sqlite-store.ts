import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import { biometricFeatures, type BiometricUpload, type CaptionUpload } from '../schemas/uploads.ts';
import type {
  BiometricWindowRow,
  CaptionWindowRow,
  InsertResult,
  InterventionRow,
  NewIntervention,
  Store,
} from './store.ts';

/** The table wrangler keeps for D1 migrations; the embedded store records its own the same way. */
export const MIGRATIONS_TABLE = 'd1_migrations';

/** The repository's `migrations/` folder, found upward from this module (source or build). */
export function defaultMigrationsDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'migrations');
    if (existsSync(join(dir, 'package.json')) && existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('migrations folder not found above the store module');
    dir = parent;
  }
}

/** Migration files in the order they apply: `NNNN_name.sql`, sorted by name. */
export function migrationFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((name) => /^\d{4}_.+\.sql$/.test(name))
    .sort();
}

/** Applies the migrations not yet recorded, each in its own transaction; returns the names applied. */
export function applyMigrations(db: DatabaseSync, dir: string): string[] {
  db.exec(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT UNIQUE,
    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
  )`);
  const applied = new Set(
    (db.prepare(`SELECT name FROM ${MIGRATIONS_TABLE}`).all() as Array<{ name: string }>).map((r) => r.name),
  );
  const record = db.prepare(`INSERT INTO ${MIGRATIONS_TABLE} (name) VALUES (?)`);
  const done: string[] = [];
  for (const name of migrationFiles(dir)) {
    if (applied.has(name)) continue;
    const sql = readFileSync(join(dir, name), 'utf8');
    db.exec('BEGIN');
    try {
      db.exec(sql);
      record.run(name);
      db.exec('COMMIT');
    } catch (error) {
      db.exec('ROLLBACK');
      throw new Error(`migration ${name} failed: ${(error as Error).message}`, { cause: error });
    }
    done.push(name);
  }
  return done;
}

const parseJson = (text: unknown, fallback: unknown): unknown => {
  if (typeof text !== 'string') return fallback;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return fallback;
  }
};

type Row = Record<string, unknown>;
const num = (value: unknown): number => Number(value);
const numOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));

const BIOMETRIC_COLUMNS = 'id, window_id, timestamp, duration_ms, quality_score, risk_prediction, features, created_at';
const CAPTION_COLUMNS =
  'id, window_id, timestamp, chunk_start_s, chunk_end_s, caption, latency_ms, tokens_generated, created_at';

// The minute query reads rows as arrays: building one JS object per row is most of its cost.
function biometricRow(r: unknown[]): BiometricWindowRow {
  return {
    id: num(r[0]),
    windowId: String(r[1]),
    timestamp: num(r[2]),
    durationMs: num(r[3]),
    qualityScore: numOrNull(r[4]),
    riskPrediction: parseJson(r[5], null),
    features: parseJson(r[6], {}) as Record<string, unknown>,
    createdAt: num(r[7]),
  };
}

function captionRow(r: unknown[]): CaptionWindowRow {
  return {
    id: num(r[0]),
    windowId: String(r[1]),
    timestamp: num(r[2]),
    chunkStartS: num(r[3]),
    chunkEndS: num(r[4]),
    caption: String(r[5]),
    latencyMs: numOrNull(r[6]),
    tokensGenerated: numOrNull(r[7]),
    createdAt: num(r[8]),
  };
}

function interventionRow(r: Row): InterventionRow {
  return {
    id: num(r.id),
    decision: r.decision === 'yes' ? 'yes' : 'no',
    reasoning: String(r.reasoning),
    nudge: r.nudge === null ? null : String(r.nudge),
    biometricIds: parseJson(r.biometric_ids, []) as number[],
    captionIds: parseJson(r.caption_ids, []) as number[],
    model: String(r.model),
    promptTokens: numOrNull(r.prompt_tokens),
    completionTokens: numOrNull(r.completion_tokens),
    totalTokens: numOrNull(r.total_tokens),
    pokeMessage: r.poke_message === null ? null : String(r.poke_message),
    pokeSentAt: numOrNull(r.poke_sent_at),
    createdAt: num(r.created_at),
  };
}

export interface SqliteStoreOptions {
  /** A file path, or `:memory:`. The file's folder is created. */
  path: string;
  migrationsDir?: string;
  now?: () => number;
}

/** The embedded store (SPEC §9): Node 22's built-in SQLite, migrations applied at open. */
export function openSqliteStore(options: SqliteStoreOptions): Store & { db: DatabaseSync; applied: string[] } {
  const now = options.now ?? Date.now;
  if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
  const db = new DatabaseSync(options.path);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;');
  const applied = applyMigrations(db, options.migrationsDir ?? defaultMigrationsDir());

  const insertBiometric = db.prepare(`INSERT OR IGNORE INTO biometric_windows
    (window_id, timestamp, duration_ms, quality_score, risk_prediction, features, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)`);
  const insertCaption = db.prepare(`INSERT OR IGNORE INTO caption_windows
    (window_id, timestamp, chunk_start_s, chunk_end_s, caption, latency_ms, tokens_generated, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)`);
  const biometricsSince = db.prepare(
    `SELECT ${BIOMETRIC_COLUMNS} FROM biometric_windows WHERE created_at >= ? ORDER BY created_at, id`,
  );
  biometricsSince.setReturnArrays(true);
  const captionsSince = db.prepare(
    `SELECT ${CAPTION_COLUMNS} FROM caption_windows WHERE created_at >= ? ORDER BY created_at, id`,
  );
  captionsSince.setReturnArrays(true);
  const insertIntervention = db.prepare(`INSERT INTO interventions
    (decision, reasoning, nudge, biometric_ids, caption_ids, model, prompt_tokens, completion_tokens,
     total_tokens, poke_message, poke_sent_at, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const interventionsSince = db.prepare(
    'SELECT * FROM interventions WHERE created_at >= ? ORDER BY created_at DESC, id DESC LIMIT ?',
  );

  return {
    db,
    applied,
    async insertBiometricWindow(w: BiometricUpload): Promise<InsertResult> {
      const storedAt = now();
      const result = insertBiometric.run(
        w.windowId,
        w.timestamp,
        w.durationMs,
        w.qualityScore ?? null,
        w.riskPrediction === undefined ? null : JSON.stringify(w.riskPrediction),
        JSON.stringify(biometricFeatures(w)),
        storedAt,
      );
      return { inserted: Number(result.changes) > 0, storedAt };
    },
    async insertCaptionWindow(c: CaptionUpload): Promise<InsertResult> {
      const storedAt = now();
      const result = insertCaption.run(
        c.windowId,
        c.timestamp,
        c.chunkStartS,
        c.chunkEndS,
        c.caption,
        c.latencyMs ?? null,
        c.tokensGenerated ?? null,
        storedAt,
      );
      return { inserted: Number(result.changes) > 0, storedAt };
    },
    async windowsSince(sinceMs: number) {
      return {
        biometrics: (biometricsSince.all(sinceMs) as unknown as unknown[][]).map(biometricRow),
        captions: (captionsSince.all(sinceMs) as unknown as unknown[][]).map(captionRow),
      };
    },
    async insertIntervention(i: NewIntervention): Promise<number> {
      const result = insertIntervention.run(
        i.decision,
        i.reasoning,
        i.nudge,
        JSON.stringify(i.biometricIds),
        JSON.stringify(i.captionIds),
        i.model,
        i.promptTokens,
        i.completionTokens,
        i.totalTokens,
        i.pokeMessage,
        i.pokeSentAt,
        now(),
      );
      return Number(result.lastInsertRowid);
    },
    async interventionsSince(sinceMs: number, limit = 20): Promise<InterventionRow[]> {
      return (interventionsSince.all(sinceMs, limit) as Row[]).map(interventionRow);
    },
    close() {
      if (db.isOpen) db.close();
    },
  };
}
