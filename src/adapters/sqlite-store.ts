import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import type { BiometricUpload, CaptionUpload } from '../schemas/uploads.ts';
import type { InsertResult, InterventionRow, NewIntervention, Store } from './store.ts';
import {
  biometricRow,
  biometricValues,
  captionRow,
  captionValues,
  interventionRow,
  interventionValues,
  SQL,
  type Row,
} from './store-sql.ts';

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

  const insertBiometric = db.prepare(SQL.insertBiometric);
  const insertCaption = db.prepare(SQL.insertCaption);
  // The minute query reads rows as arrays: building one JS object per row is most of its cost.
  const biometricsSince = db.prepare(SQL.biometricsSince);
  biometricsSince.setReturnArrays(true);
  const captionsSince = db.prepare(SQL.captionsSince);
  captionsSince.setReturnArrays(true);
  const insertIntervention = db.prepare(SQL.insertIntervention);
  const interventionsSince = db.prepare(SQL.interventionsSince);

  return {
    db,
    applied,
    async insertBiometricWindow(w: BiometricUpload): Promise<InsertResult> {
      const storedAt = now();
      const result = insertBiometric.run(...biometricValues(w, storedAt));
      return { inserted: Number(result.changes) > 0, storedAt };
    },
    async insertCaptionWindow(c: CaptionUpload): Promise<InsertResult> {
      const storedAt = now();
      const result = insertCaption.run(...captionValues(c, storedAt));
      return { inserted: Number(result.changes) > 0, storedAt };
    },
    async insertCaptionWindows(captions: readonly CaptionUpload[]): Promise<InsertResult[]> {
      const storedAt = now();
      db.exec('BEGIN');
      try {
        const results = captions.map((c) => ({
          inserted: Number(insertCaption.run(...captionValues(c, storedAt)).changes) > 0,
          storedAt,
        }));
        db.exec('COMMIT');
        return results;
      } catch (error) {
        if (db.isTransaction) db.exec('ROLLBACK');
        throw error;
      }
    },
    async windowsSince(sinceMs: number) {
      return {
        biometrics: (biometricsSince.all(sinceMs) as unknown as unknown[][]).map(biometricRow),
        captions: (captionsSince.all(sinceMs) as unknown as unknown[][]).map(captionRow),
      };
    },
    async insertIntervention(i: NewIntervention): Promise<number> {
      const result = insertIntervention.run(...interventionValues(i, now()));
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
