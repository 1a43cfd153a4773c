import type { BiometricUpload, CaptionUpload } from '../schemas/uploads.ts';

/**
 * The storage role (SPEC §9): the embedded SQLite store and the Worker's D1
 * store both implement it, so this file holds types only.
 */

export interface BiometricWindowRow {
  id: number;
  windowId: string;
  timestamp: number;
  durationMs: number;
  qualityScore: number | null;
  riskPrediction: unknown;
  features: Record<string, unknown>;
  createdAt: number;
}

export interface CaptionWindowRow {
  id: number;
  windowId: string;
  timestamp: number;
  chunkStartS: number;
  chunkEndS: number;
  caption: string;
  latencyMs: number | null;
  tokensGenerated: number | null;
  createdAt: number;
}

export interface NewIntervention {
  decision: 'yes' | 'no';
  /** NULL only in rows the previous system wrote. */
  reasoning: string | null;
  nudge: string | null;
  biometricIds: number[];
  captionIds: number[];
  model: string;
  promptTokens: number | null;
  completionTokens: number | null;
  totalTokens: number | null;
  pokeMessage: string | null;
  pokeSentAt: number | null;
}

export interface InterventionRow extends NewIntervention {
  id: number;
  createdAt: number;
}

/** `inserted` is false when the window id was stored before (INSERT OR IGNORE). */
export interface InsertResult {
  inserted: boolean;
  storedAt: number;
}

export interface Store {
  insertBiometricWindow(window: BiometricUpload): Promise<InsertResult>;
  insertCaptionWindow(caption: CaptionUpload): Promise<InsertResult>;
  /** Inserts a batch of captions all or none (one transaction), with one `storedAt`. */
  insertCaptionWindows(captions: readonly CaptionUpload[]): Promise<InsertResult[]>;
  /** Windows created at or after `sinceMs` (epoch ms), oldest first. */
  windowsSince(sinceMs: number): Promise<{ biometrics: BiometricWindowRow[]; captions: CaptionWindowRow[] }>;
  insertIntervention(intervention: NewIntervention): Promise<number>;
  /** Interventions created at or after `sinceMs`, newest first, at most `limit`. */
  interventionsSince(sinceMs: number, limit?: number): Promise<InterventionRow[]>;
  /**
   * Claims the tick of the period starting at `periodStart` (epoch ms), once for
   * all tickers on this database: true for the one that got it.
   */
  claimTick(periodStart: number, claimedAt: number): Promise<boolean>;
  /**
   * Claims the right to send a nudge for the claimed period at `at` (epoch ms):
   * true only when no nudge was claimed, or sent, within `cooldownMs` before,
   * decided in one statement, so two tickers never both get it.
   */
  claimNudge(periodStart: number, at: number, cooldownMs: number): Promise<boolean>;
  close(): void | Promise<void>;
}
