import { z } from 'zod';

/**
 * Upload bodies shared by the Node server and the Worker (SPEC §8). Plain zod,
 * no runtime-specific imports, so both bundles use the same rules.
 */

const windowId = z.string().trim().min(1).max(200);
const epochMs = z.number().int().nonnegative();
const feature = z.union([z.number(), z.string().max(1000), z.boolean(), z.null()]);

/** At most this many extra feature fields per biometric window. */
export const MAX_FEATURES = 256;

export const biometricUploadSchema = z
  .object({
    windowId,
    timestamp: epochMs,
    durationMs: z.number().int().positive(),
    qualityScore: z.number().min(0).max(1).optional(),
    riskPrediction: z.union([z.number(), z.string().max(1000), z.record(z.string(), feature)]).optional(),
  })
  .catchall(feature)
  .refine((body) => Object.keys(body).length <= MAX_FEATURES + 5, {
    message: `at most ${MAX_FEATURES} feature fields`,
  });

export const captionUploadSchema = z
  .object({
    windowId,
    timestamp: epochMs,
    chunkStartS: z.number().nonnegative(),
    chunkEndS: z.number().nonnegative(),
    caption: z.string().max(10_000),
    latencyMs: z.number().int().nonnegative().optional(),
    tokensGenerated: z.number().int().nonnegative().optional(),
  })
  .refine((body) => body.chunkEndS >= body.chunkStartS, {
    message: 'must not be before chunkStartS',
    path: ['chunkEndS'],
  });

export interface BiometricUpload {
  windowId: string;
  timestamp: number;
  durationMs: number;
  qualityScore?: number;
  riskPrediction?: number | string | Record<string, number | string | boolean | null>;
  /** Any other field is a feature of the window. */
  [feature: string]: unknown;
}
export type CaptionUpload = z.output<typeof captionUploadSchema>;

/** The fields of a biometric upload that are not named columns. */
export function biometricFeatures(body: BiometricUpload): Record<string, unknown> {
  const { windowId: _w, timestamp: _t, durationMs: _d, qualityScore: _q, riskPrediction: _r, ...features } = body;
  return features;
}

/** One line naming the first bad field, e.g. `windowId: Invalid input: expected string, received undefined`. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid body';
  const path = issue.path.length > 0 ? issue.path.join('.') : 'body';
  return `${path}: ${issue.message}`;
}
