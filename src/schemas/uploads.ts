import { z } from 'zod';

/**
 * Upload bodies shared by the Node server and the Worker (SPEC §8). Plain zod,
 * no runtime-specific imports, so both bundles use the same rules.
 */

const windowId = z.string().trim().min(1).max(200);
const epochMs = z.number().int().nonnegative();
const feature = z.union([z.number(), z.string().max(1000), z.boolean(), z.null()]);

/** Upload bodies above this are refused with a 400 naming the body, by the server and the Worker alike. */
export const MAX_UPLOAD_BYTES = 256 * 1024;

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

/** The caption fields of an ack (SPEC §4) as the Worker's relay reads them off the wire. */
export const captionAckSchema = z.object({
  window_id: windowId,
  caption: z.string().max(10_000),
  chunk_start_s: z.number().nonnegative(),
  chunk_end_s: z.number().nonnegative(),
  latency_ms: z.number().nonnegative().optional(),
  tokens_generated: z.number().int().nonnegative().optional(),
});
export type CaptionAck = z.output<typeof captionAckSchema>;

/**
 * The stored form of a caption that rode on an ack; `openedAt` is when the
 * connection opened (epoch ms), so `timestamp` is the chunk's wall-clock start.
 * The socket layer and the Worker's relay both write captions this way, keyed
 * by `window_id`, so either write deduplicates the other.
 */
export function captionUploadFromAck(ack: CaptionAck, openedAt: number): CaptionUpload {
  return {
    windowId: ack.window_id,
    timestamp: openedAt + Math.round(ack.chunk_start_s * 1000),
    chunkStartS: ack.chunk_start_s,
    chunkEndS: ack.chunk_end_s,
    caption: ack.caption,
    ...(ack.latency_ms === undefined ? {} : { latencyMs: Math.round(ack.latency_ms) }),
    ...(ack.tokens_generated === undefined ? {} : { tokensGenerated: ack.tokens_generated }),
  };
}
