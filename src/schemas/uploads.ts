import { MIMEType } from 'whatwg-mimetype';
import { z } from 'zod';

/**
 * Upload bodies and how a request carrying one is read (SPEC §3, §8), shared by
 * the Node server and the Worker so both answer every request alike. Plain zod
 * and web-platform APIs (TextDecoder), no runtime-specific imports.
 *
 * The rules accept what the clients of the deployed system send
 * (`test/fixtures/real-clients/`): optional fields and features may be null
 * (stored as NULL / JSON null), `riskPrediction` is null or any JSON object or
 * array, stored intact; timestamps may be fractional.
 */

/**
 * Text stored in a TEXT column as sent: no NUL (SQLite's C API would cut the
 * string there) and no unpaired surrogate (UTF-8 cannot hold one; each runtime
 * would replace it differently).
 */
const storableText = (schema: z.ZodString) =>
  schema.refine((text) => !text.includes('\0') && text.isWellFormed(), { message: 'must not contain NUL or unpaired surrogates' });

const windowId = storableText(z.string().trim().min(1).max(200));
/** A finite number ≥ 0 (zod refuses NaN and ±Infinity: JSON's `1e999` parses to Infinity). */
const nonNegative = z.number().nonnegative();
/** `null` is "absent": stored as SQL NULL. */
const optional = <T extends z.ZodType>(schema: T) => schema.nullish();

/** Upload bodies above this are refused with a 400 naming the body, by the server and the Worker alike. */
export const MAX_UPLOAD_BYTES = 256 * 1024;

/** At most this many extra feature fields per biometric window. */
export const MAX_FEATURES = 256;

/** Any JSON object or array, kept as it came (nesting and all). */
const jsonContainer = z.custom<Record<string, unknown> | unknown[]>((value) => typeof value === 'object' && value !== null, {
  error: 'expected a JSON object, an array or null',
});

/** The named fields of a biometric upload; every other field is a feature, any JSON value, stored as sent. */
const BIOMETRIC_FIELDS = ['windowId', 'timestamp', 'durationMs', 'qualityScore', 'riskPrediction'] as const;

export const biometricUploadSchema = z
  .object({
    windowId,
    /** Epoch ms. */
    timestamp: nonNegative,
    durationMs: nonNegative,
    qualityScore: optional(z.number().min(0).max(1)),
    riskPrediction: optional(jsonContainer),
  })
  .catchall(z.unknown())
  .refine((body) => Object.keys(body).filter((key) => !(BIOMETRIC_FIELDS as readonly string[]).includes(key)).length <= MAX_FEATURES, {
    message: `at most ${MAX_FEATURES} feature fields`,
  });

export const captionUploadSchema = z
  .object({
    windowId,
    /** Epoch ms from this project; the previous container sent seconds since its connection opened. */
    timestamp: nonNegative,
    chunkStartS: nonNegative,
    chunkEndS: nonNegative,
    caption: storableText(z.string().max(10_000)),
    latencyMs: optional(nonNegative),
    tokensGenerated: optional(z.number().int().nonnegative()),
  })
  .refine((body) => body.chunkEndS >= body.chunkStartS, {
    message: 'must not be before chunkStartS',
    path: ['chunkEndS'],
  });

export interface BiometricUpload {
  windowId: string;
  timestamp: number;
  durationMs: number;
  qualityScore?: number | null | undefined;
  riskPrediction?: Record<string, unknown> | unknown[] | null | undefined;
  /** Any other field is a feature of the window. */
  [feature: string]: unknown;
}
export type CaptionUpload = z.output<typeof captionUploadSchema>;

/** The fields of a biometric upload that are not named columns. */
export function biometricFeatures(body: BiometricUpload): Record<string, unknown> {
  const features: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body)) {
    if (!(BIOMETRIC_FIELDS as readonly string[]).includes(key)) features[key] = value;
  }
  return features;
}

/** One line naming the first bad field, e.g. `windowId: Invalid input: expected string, received undefined`. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid body';
  const path = issue.path.length > 0 ? issue.path.join('.') : 'body';
  return `${path}: ${issue.message}`;
}

/** The answer to an upload request: status and JSON body, the same from both runtimes. */
export interface UploadAnswer {
  status: 200 | 400 | 415 | 503;
  body: { success: true; windowId: string; storedAt: number } | { success: false; error: string };
}

const refuse = (status: 400 | 415 | 503, error: string): UploadAnswer => ({ status, body: { success: false, error } });

/** The refusal of a body whose declared or actual size is over `MAX_UPLOAD_BYTES`. */
export const TOO_LARGE: UploadAnswer = refuse(400, `body: larger than ${MAX_UPLOAD_BYTES} bytes`);

/**
 * Whether a `charset` label names UTF-8, by the WHATWG Encoding Standard's
 * label table (`utf-8`, `utf8`, `unicode-1-1-utf-8`, …, any case), which
 * `TextDecoder` implements in both runtimes.
 */
function isUtf8Label(label: string): boolean {
  try {
    return new TextDecoder(label).encoding === 'utf-8';
  } catch {
    return false;
  }
}

/** JSON nested deeper than this is refused: real bodies are 5 levels deep, and runtimes overflow at different depths. */
export const MAX_JSON_DEPTH = 32;

/**
 * Where a parsed body breaks the rules JSON.parse does not check: nesting
 * deeper than `MAX_JSON_DEPTH`, a number that is not finite (`1e999` parses to
 * Infinity, which would be stored as null), a `__proto__` key (validation
 * would drop it). Returns the refusal's text, or undefined.
 */
function jsonShapeProblem(value: unknown): string | undefined {
  const found = shapeProblemAt(value, 0);
  if (found === undefined) return undefined;
  if (found.keys === null) return `body: ${found.problem}`;
  return `${found.keys.length === 0 ? 'body' : found.keys.reverse().join('.')}: ${found.problem}`;
}

/**
 * The first problem under `value`, depth first, with the keys leading to it
 * innermost first (`keys` null: a problem of the whole body). The recursion is
 * bounded by `MAX_JSON_DEPTH`, and the path is built only on the way back from
 * a problem, so a valid body costs one visit per value and no strings.
 */
function shapeProblemAt(value: unknown, depth: number): { keys: string[] | null; problem: string } | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : { keys: [], problem: 'not a finite number' };
  if (typeof value !== 'object' || value === null) return undefined;
  if (depth >= MAX_JSON_DEPTH) return { keys: null, problem: `nested deeper than ${MAX_JSON_DEPTH} levels` };
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const found = shapeProblemAt(value[i], depth + 1);
      if (found) return (found.keys?.push(String(i)), found);
    }
    return undefined;
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (key === '__proto__') return { keys: [key], problem: 'not allowed as a field name' };
    const found = shapeProblemAt(record[key], depth + 1);
    if (found) return (found.keys?.push(key), found);
  }
  return undefined;
}

/** What a transport hands over of a request with a JSON body. */
export interface JsonBodyRequest {
  /** The Content-Type header; a runtime that joins repeated headers with ", " gives them all. */
  contentType?: string | null | undefined;
  contentEncoding?: string | null | undefined;
  /** The body as received (at most `MAX_UPLOAD_BYTES`; the transport refuses more). */
  bytes: Uint8Array;
}

export type BodyRefusalReason = 'too-large' | 'encoding' | 'charset' | 'not-utf8' | 'not-json' | 'shape';

/**
 * The refusal of a body sent with a Content-Encoding other than identity (none
 * is decoded, by either runtime), or undefined. Transports call it before
 * reading a body, so an encoded one is refused unread.
 */
export function encodingRefusal(contentEncoding: string | null | undefined): UploadAnswer | undefined {
  const encoding = contentEncoding?.trim();
  if (!encoding || encoding.toLowerCase() === 'identity') return undefined;
  return refuse(415, `content-encoding: "${encoding.slice(0, 40)}" is not supported, send the body as it is`);
}

/**
 * The body's JSON value, or the refusal. Any media type is read as JSON
 * (wearables do not all send one); a `charset` parameter that is a spelling of
 * UTF-8, or none, is read as UTF-8; any other charset is a 415 naming it. The
 * header is parsed as browsers do (WHATWG MIME Sniffing §4.4), so a sloppy one
 * (`application/json; charset=UTF8;`) still reads; of repeated headers the
 * first counts, as in Node. A Content-Encoding other than identity is a 415.
 * Bytes that are not UTF-8, text that is not JSON, or JSON that breaks the
 * shape rules (`jsonShapeProblem`) are a 400; a leading byte-order mark is skipped.
 */
export function readJsonBody(request: JsonBodyRequest): { ok: true; value: unknown } | { ok: false; reason: BodyRefusalReason; answer: UploadAnswer } {
  const { bytes } = request;
  if (bytes.byteLength > MAX_UPLOAD_BYTES) return { ok: false, reason: 'too-large', answer: TOO_LARGE };
  const encoded = encodingRefusal(request.contentEncoding);
  if (encoded) return { ok: false, reason: 'encoding', answer: encoded };
  const contentType = request.contentType?.split(',')[0];
  const charset = contentType ? MIMEType.parse(contentType)?.parameters.get('charset') : undefined;
  if (charset !== undefined && !isUtf8Label(charset)) {
    const answer = refuse(415, `content-type: charset "${charset.slice(0, 40)}" is not supported, send UTF-8`);
    return { ok: false, reason: 'charset', answer };
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    return { ok: false, reason: 'not-utf8', answer: refuse(400, 'body: not UTF-8') };
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    return { ok: false, reason: 'not-json', answer: refuse(400, 'body: invalid JSON') };
  }
  const problem = jsonShapeProblem(value);
  if (problem) return { ok: false, reason: 'shape', answer: refuse(400, problem) };
  return { ok: true, value };
}

type UploadSchema = typeof biometricUploadSchema | typeof captionUploadSchema;

/**
 * Reads, validates and stores one upload, and says what to answer: 200
 * `{success, windowId, storedAt}`; 400 or 415 `{success: false, error}` naming
 * the field or the body; 503 when the store fails (`onStoreError` hears why).
 */
export async function answerUpload<S extends UploadSchema>(
  schema: S,
  request: JsonBodyRequest,
  insert: (body: z.output<S>) => Promise<{ storedAt: number }>,
  onStoreError: (error: unknown) => void,
): Promise<UploadAnswer> {
  const read = readJsonBody(request);
  if (!read.ok) return read.answer;
  const parsed = schema.safeParse(read.value);
  if (!parsed.success) return refuse(400, describeIssue(parsed.error));
  try {
    const { storedAt } = await insert(parsed.data as z.output<S>);
    return { status: 200, body: { success: true, windowId: parsed.data.windowId, storedAt } };
  } catch (error) {
    onStoreError(error);
    return refuse(503, 'storage unavailable');
  }
}

/** The caption fields of an ack (SPEC §4) as the Worker's relay reads them off the wire. */
export const captionAckSchema = z.object({
  window_id: windowId,
  caption: storableText(z.string().max(10_000)),
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
