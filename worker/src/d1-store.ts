import type { BiometricUpload, CaptionUpload } from '../../src/schemas/uploads.ts';
import type { InsertResult, InterventionRow, NewIntervention, Store } from '../../src/adapters/store.ts';
import {
  biometricRow,
  biometricValues,
  captionRow,
  captionValues,
  interventionRow,
  interventionValues,
  SQL,
  type Row,
} from '../../src/adapters/store-sql.ts';

/** The store port over D1 (SPEC §9): the same statements and rows as the embedded store. */
export function d1Store(db: D1Database, now: () => number = Date.now): Store {
  const insert = async (sql: string, values: (string | number | null)[], storedAt: number): Promise<InsertResult> => {
    const result = await db.prepare(sql).bind(...values).run();
    return { inserted: result.meta.changes > 0, storedAt };
  };
  return {
    insertBiometricWindow(w: BiometricUpload) {
      const storedAt = now();
      return insert(SQL.insertBiometric, biometricValues(w, storedAt), storedAt);
    },
    insertCaptionWindow(c: CaptionUpload) {
      const storedAt = now();
      return insert(SQL.insertCaption, captionValues(c, storedAt), storedAt);
    },
    async insertCaptionWindows(captions: readonly CaptionUpload[]) {
      if (captions.length === 0) return [];
      const storedAt = now();
      const statement = db.prepare(SQL.insertCaption);
      // D1 runs a batch as one transaction.
      const results = await db.batch(captions.map((c) => statement.bind(...captionValues(c, storedAt))));
      return results.map((result) => ({ inserted: result.meta.changes > 0, storedAt }));
    },
    async windowsSince(sinceMs: number) {
      const [biometrics, captions] = await Promise.all([
        db.prepare(SQL.biometricsSince).bind(sinceMs).raw(),
        db.prepare(SQL.captionsSince).bind(sinceMs).raw(),
      ]);
      return { biometrics: biometrics.map(biometricRow), captions: captions.map(captionRow) };
    },
    async insertIntervention(i: NewIntervention) {
      const result = await db.prepare(SQL.insertIntervention).bind(...interventionValues(i, now())).run();
      return result.meta.last_row_id;
    },
    async interventionsSince(sinceMs: number, limit = 20): Promise<InterventionRow[]> {
      const { results } = await db.prepare(SQL.interventionsSince).bind(sinceMs, limit).all<Row>();
      return results.map(interventionRow);
    },
    async claimTick(periodStart: number, claimedAt: number) {
      const result = await db.prepare(SQL.claimTick).bind(periodStart, claimedAt).run();
      return result.meta.changes > 0;
    },
    async claimNudge(periodStart: number, at: number, cooldownMs: number) {
      const result = await db.prepare(SQL.claimNudge).bind(at, periodStart, cooldownMs).run();
      return result.meta.changes > 0;
    },
    close() {},
  };
}
