import { biometricFeatures, type BiometricUpload, type CaptionUpload } from '../schemas/uploads.ts';
import type { BiometricWindowRow, CaptionWindowRow, InterventionRow, NewIntervention } from './store.ts';

// The SQL and row mapping both stores share: the embedded one (node:sqlite) and
// the Worker's (D1). No runtime-specific imports here.

const parseJson = (text: unknown, fallback: unknown): unknown => {
  if (typeof text !== 'string') return fallback;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return fallback;
  }
};

export type Row = Record<string, unknown>;
const num = (value: unknown): number => Number(value);
const numOrNull = (value: unknown): number | null => (value === null || value === undefined ? null : Number(value));
const textOrNull = (value: unknown): string | null => (value === null || value === undefined ? null : String(value));
/** Features are an object; anything else (say, a JSON `null` the previous system stored) reads as none. */
const objectOf = (value: unknown): Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
/** A JSON array of ids; NULL (the previous system's rows) or anything else reads as none. */
const idList = (value: unknown): number[] => {
  const parsed = parseJson(value, []);
  return Array.isArray(parsed) ? (parsed as number[]) : [];
};

const BIOMETRIC_COLUMNS = 'id, window_id, timestamp, duration_ms, quality_score, risk_prediction, features, created_at';
const CAPTION_COLUMNS =
  'id, window_id, timestamp, chunk_start_s, chunk_end_s, caption, latency_ms, tokens_generated, created_at';

/** Rows are read as arrays in the column order above (cheaper than an object per row). */
export function biometricRow(r: unknown[]): BiometricWindowRow {
  return {
    id: num(r[0]),
    windowId: String(r[1]),
    timestamp: num(r[2]),
    durationMs: num(r[3]),
    qualityScore: numOrNull(r[4]),
    riskPrediction: parseJson(r[5], null),
    features: objectOf(parseJson(r[6], {})),
    createdAt: num(r[7]),
  };
}

export function captionRow(r: unknown[]): CaptionWindowRow {
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

export function interventionRow(r: Row): InterventionRow {
  return {
    id: num(r.id),
    decision: r.decision === 'yes' ? 'yes' : 'no',
    reasoning: textOrNull(r.reasoning),
    nudge: textOrNull(r.nudge),
    biometricIds: idList(r.biometric_ids),
    captionIds: idList(r.caption_ids),
    model: String(r.model),
    promptTokens: numOrNull(r.prompt_tokens),
    completionTokens: numOrNull(r.completion_tokens),
    totalTokens: numOrNull(r.total_tokens),
    pokeMessage: textOrNull(r.poke_message),
    pokeSentAt: numOrNull(r.poke_sent_at),
    createdAt: num(r.created_at),
  };
}

/** Statements of the store port, the same text for SQLite and D1. */
export const SQL = {
  insertBiometric: `INSERT OR IGNORE INTO biometric_windows
    (window_id, timestamp, duration_ms, quality_score, risk_prediction, features, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)`,
  insertCaption: `INSERT OR IGNORE INTO caption_windows
    (window_id, timestamp, chunk_start_s, chunk_end_s, caption, latency_ms, tokens_generated, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  biometricsSince: `SELECT ${BIOMETRIC_COLUMNS} FROM biometric_windows WHERE created_at >= ? ORDER BY created_at, id`,
  captionsSince: `SELECT ${CAPTION_COLUMNS} FROM caption_windows WHERE created_at >= ? ORDER BY created_at, id`,
  insertIntervention: `INSERT INTO interventions
    (decision, reasoning, nudge, biometric_ids, caption_ids, model, prompt_tokens, completion_tokens,
     total_tokens, poke_message, poke_sent_at, created_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  interventionsSince: 'SELECT * FROM interventions WHERE created_at >= ? ORDER BY created_at DESC, id DESC LIMIT ?',
  claimTick: 'INSERT OR IGNORE INTO intervention_ticks (period_start, claimed_at) VALUES (?, ?)',
  // One statement: the check and the claim cannot interleave with another ticker's.
  claimNudge: `UPDATE intervention_ticks SET nudged_at = ?1
    WHERE period_start = ?2 AND nudged_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM intervention_ticks WHERE nudged_at > ?1 - ?3)
      AND NOT EXISTS (SELECT 1 FROM interventions WHERE poke_sent_at > ?1 - ?3)`,
} as const;

type SqlValue = string | number | null;

export function biometricValues(w: BiometricUpload, storedAt: number): SqlValue[] {
  return [
    w.windowId,
    w.timestamp,
    w.durationMs,
    w.qualityScore ?? null,
    w.riskPrediction === undefined || w.riskPrediction === null ? null : JSON.stringify(w.riskPrediction),
    JSON.stringify(biometricFeatures(w)),
    storedAt,
  ];
}

export function captionValues(c: CaptionUpload, storedAt: number): SqlValue[] {
  return [c.windowId, c.timestamp, c.chunkStartS, c.chunkEndS, c.caption, c.latencyMs ?? null, c.tokensGenerated ?? null, storedAt];
}

export function interventionValues(i: NewIntervention, createdAt: number): SqlValue[] {
  return [
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
    createdAt,
  ];
}
