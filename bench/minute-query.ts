/**
 * `npm run bench:store`: fills caption_windows and biometric_windows at a
 * density of `--rows` a day (1,000,000 rows each is a simulated day) and times
 * the intervention tick's query (windows created in the last 60 s, both tables)
 * with and without the created_at indexes (made by migration 0005), as the history grows.
 *
 *   --rows N    rows per table at the largest size (default 1,000,000)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';
import { openSqliteStore } from '../src/adapters/sqlite-store.ts';
import type { Store } from '../src/adapters/store.ts';

const args = process.argv.slice(2);
const rowsArg = args.indexOf('--rows');
const maxRows = rowsArg >= 0 ? Number(args[rowsArg + 1]) : 1_000_000;
const sizes = [maxRows / 10, maxRows / 3, maxRows].map(Math.round);
const DAY_MS = 24 * 60 * 60 * 1000;
const now = Date.UTC(2026, 10, 25, 12, 0, 0);
const log = (text: string) => process.stdout.write(`${text}\n`);

const work = mkdtempSync(join(tmpdir(), 'foresight-minute-'));

/**
 * Inserts `total` rows at the density of `maxRows` a day, ending at `now`, in one
 * transaction: every size has the same last minute, only the history grows.
 */
function fill(db: DatabaseSync, total: number): void {
  const caption = db.prepare(
    'INSERT INTO caption_windows (window_id, timestamp, chunk_start_s, chunk_end_s, caption, latency_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  const biometric = db.prepare(
    'INSERT INTO biometric_windows (window_id, timestamp, duration_ms, quality_score, features, created_at) VALUES (?, ?, ?, ?, ?, ?)',
  );
  db.exec('BEGIN');
  for (let i = 0; i < total; i++) {
    const createdAt = now - Math.floor(((total - i) * DAY_MS) / maxRows);
    caption.run(`s-${i}`, createdAt, 0, 1, 'a person at a desk with a laptop', 420, createdAt);
    biometric.run(`b-${i}`, createdAt, 60_000, 0.9, '{"hr":72}', createdAt);
  }
  db.exec('COMMIT');
}

/** The tick's read through the store port: both tables' rows as domain objects. */
const minuteQuery = (store: Store) => async () => {
  const { biometrics, captions } = await store.windowsSince(now - 60_000);
  return biometrics.length + captions.length;
};

/** The same lookup without building result rows: what the index itself costs. */
const minuteCount = (db: DatabaseSync) => {
  const captions = db.prepare('SELECT count(*) AS n FROM caption_windows WHERE created_at >= ?');
  const biometrics = db.prepare('SELECT count(*) AS n FROM biometric_windows WHERE created_at >= ?');
  return async () => {
    const since = now - 60_000;
    return Number((captions.get(since) as { n: number }).n) + Number((biometrics.get(since) as { n: number }).n);
  };
};

async function medianMs(run: () => Promise<number>, iterations: number): Promise<{ ms: number; rows: number }> {
  const times: number[] = [];
  let rows = 0;
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    rows = await run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { ms: times[Math.floor(times.length / 2)]!, rows };
}

const indexedStore = openSqliteStore({ path: join(work, 'indexed.db') });
const plainStore = openSqliteStore({ path: join(work, 'plain.db') });
const indexed = indexedStore.db;
const plain = plainStore.db;
plain.exec('DROP INDEX idx_biometric_windows_created_at; DROP INDEX idx_caption_windows_created_at;');

log('rows per table | indexed: tick read (median) | indexed: count only | no index: tick read | no index: count only | rows in the minute');
log('---:|---:|---:|---:|---:|---:');
let filled = 0;
for (const size of sizes) {
  for (const db of [indexed, plain]) {
    db.exec('DELETE FROM caption_windows; DELETE FROM biometric_windows;');
    fill(db, size);
  }
  filled = size;
  const a = await medianMs(minuteQuery(indexedStore), 50);
  const ac = await medianMs(minuteCount(indexed), 50);
  const b = await medianMs(minuteQuery(plainStore), 10);
  const bc = await medianMs(minuteCount(plain), 10);
  const ms = (m: { ms: number }) => `${m.ms.toFixed(3)} ms`;
  log(`${size.toLocaleString('en-US')} | ${ms(a)} | ${ms(ac)} | ${ms(b)} | ${ms(bc)} | ${a.rows}`);
}

const plan = (db: DatabaseSync) =>
  (db.prepare('EXPLAIN QUERY PLAN SELECT * FROM caption_windows WHERE created_at >= ? ORDER BY created_at, id').all(now - 60_000) as Array<{ detail: string }>)
    .map((r) => r.detail)
    .join('; ');
log('');
log(`EXPLAIN QUERY PLAN (${filled.toLocaleString('en-US')} rows), indexed: ${plan(indexed)}`);
log(`EXPLAIN QUERY PLAN (${filled.toLocaleString('en-US')} rows), no index: ${plan(plain)}`);
indexedStore.close();
plainStore.close();
rmSync(work, { recursive: true, force: true });
