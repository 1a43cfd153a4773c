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

/** Migration files in the order they apply: `NNNN_name.sql`, sorted by name (wrangler's order too). */
export function migrationFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => /^\d{4}_.+\.sql$/.test(name))
    .sort();
}

/**
 * Where the migrations this project shipped before it took over the live
 * database's migration names are kept, unedited (wrangler reads only the
 * top level of `migrations/`, so it never sees them).
 */
export const SUPERSEDED_DIR = 'superseded';

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT UNIQUE,
  applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP NOT NULL
)`;

/**
 * Applies the migrations not yet recorded in `d1_migrations`, each in its own
 * transaction, the way `wrangler d1 migrations apply` does; returns the names
 * applied. A database made by the superseded migrations is adopted first (see
 * `adoptSupersededLayout`). Throws `migration <name> failed: <reason>`, with
 * that migration rolled back.
 */
export function applyMigrations(db: DatabaseSync, dir: string): string[] {
  db.exec(createMigrationsTable);
  const applied = new Set(
    (db.prepare(`SELECT name FROM ${MIGRATIONS_TABLE}`).all() as Array<{ name: string }>).map((r) => r.name),
  );
  const superseded = migrationFiles(join(dir, SUPERSEDED_DIR));
  if (superseded.some((name) => applied.has(name))) return adoptSupersededLayout(db, dir, applied, superseded);
  const record = db.prepare(`INSERT INTO ${MIGRATIONS_TABLE} (name) VALUES (?)`);
  const done: string[] = [];
  for (const name of migrationFiles(dir)) {
    if (applied.has(name)) continue;
    inTransaction(db, `migration ${name}`, () => {
      db.exec(readFileSync(join(dir, name), 'utf8'));
      record.run(name);
    });
    done.push(name);
  }
  return done;
}

function inTransaction(db: DatabaseSync, what: string, work: () => void): void {
  db.exec('BEGIN');
  try {
    work();
    db.exec('COMMIT');
  } catch (error) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw new Error(`${what} failed: ${(error as Error).message}`, { cause: error });
  }
}

const quoted = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** The tables the superseded migrations made; every other table is left alone. */
const SUPERSEDED_TABLES = ['biometric_windows', 'caption_windows', 'interventions'];

/**
 * A database made by this project's superseded migrations has the current
 * tables' columns under other migration names. In one transaction: finish the
 * superseded chain, move its tables aside (their indexes dropped), run the
 * whole current chain, copy every row back (the columns both have; ids and id
 * counters kept), drop the old tables, and leave `d1_migrations` as a fresh
 * database's.
 */
function adoptSupersededLayout(db: DatabaseSync, dir: string, applied: Set<string>, superseded: string[]): string[] {
  const names = migrationFiles(dir);
  inTransaction(db, 'adopting the superseded migrations', () => {
    for (const name of superseded) {
      if (!applied.has(name)) db.exec(readFileSync(join(dir, SUPERSEDED_DIR, name), 'utf8'));
    }
    const indexes = db
      .prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN (?, ?, ?)`)
      .all(...SUPERSEDED_TABLES) as Array<{ name: string }>;
    for (const { name } of indexes) db.exec(`DROP INDEX ${quoted(name)}`);
    for (const table of SUPERSEDED_TABLES) db.exec(`ALTER TABLE ${quoted(table)} RENAME TO ${quoted(`superseded_${table}`)}`);
    const forget = db.prepare(`DELETE FROM ${MIGRATIONS_TABLE} WHERE name = ?`);
    for (const name of superseded) forget.run(name);
    const record = db.prepare(`INSERT INTO ${MIGRATIONS_TABLE} (name) VALUES (?)`);
    for (const name of names) {
      db.exec(readFileSync(join(dir, name), 'utf8'));
      record.run(name);
    }
    const columnsOf = (table: string) =>
      new Set((db.prepare(`SELECT name FROM pragma_table_info(?)`).all(table) as Array<{ name: string }>).map((c) => c.name));
    for (const table of SUPERSEDED_TABLES) {
      const old = `superseded_${table}`;
      const current = columnsOf(table);
      const shared = [...columnsOf(old)].filter((c) => current.has(c)).map(quoted).join(', ');
      db.exec(`INSERT INTO ${quoted(table)} (${shared}) SELECT ${shared} FROM ${quoted(old)}`);
      // The id counter goes on from the old table's (rows deleted at its end stay unused).
      db.prepare('DELETE FROM sqlite_sequence WHERE name = ?').run(table);
      db.prepare('UPDATE sqlite_sequence SET name = ? WHERE name = ?').run(table, old);
      db.exec(`DROP TABLE ${quoted(old)}`);
    }
  });
  return names;
}

export interface SqliteStoreOptions {
  /** A file path, or `:memory:`. The file's folder is created. */
  path: string;
  migrationsDir?: string;
  now?: () => number;
  /** How long a statement waits for another connection's lock before it fails (default 5000 ms). */
  busyTimeoutMs?: number;
}

/**
 * The embedded store (SPEC §9): Node 22's built-in SQLite, migrations applied
 * at open. Its calls are synchronous under their promises: the server runs it
 * in a worker thread (`openSqliteStoreInWorker`); tools and tests use it here.
 */
export function openSqliteStore(options: SqliteStoreOptions): Store & { db: DatabaseSync; applied: string[] } {
  const now = options.now ?? Date.now;
  if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
  const db = new DatabaseSync(options.path);
  // busy_timeout first: switching to WAL needs the lock another process may hold.
  db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.round(options.busyTimeoutMs ?? 5_000))}`);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
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
  const claimTick = db.prepare(SQL.claimTick);
  const claimNudge = db.prepare(SQL.claimNudge);

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
    async claimTick(periodStart: number, claimedAt: number): Promise<boolean> {
      return Number(claimTick.run(periodStart, claimedAt).changes) > 0;
    },
    async claimNudge(periodStart: number, at: number, cooldownMs: number): Promise<boolean> {
      return Number(claimNudge.run(at, periodStart, cooldownMs).changes) > 0;
    },
    close() {
      if (db.isOpen) db.close();
    },
  };
}
