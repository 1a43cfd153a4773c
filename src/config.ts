import { z } from 'zod';
import { magicWordSchema } from './auth.ts';

/** Parses a switch the way people write them in env files. */
const onOff = (fallback: boolean) =>
  z
    .string()
    .trim()
    .toLowerCase()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined || value === '') return fallback;
      if (['1', 'on', 'true', 'yes'].includes(value)) return true;
      if (['0', 'off', 'false', 'no'].includes(value)) return false;
      ctx.addIssue({ code: 'custom', message: `expected on/off, got "${value}"` });
      return z.NEVER;
    });

/** An optional string where an empty value means unset. */
const optionalText = z
  .string()
  .optional()
  .transform((value) => (value === undefined || value.trim() === '' ? undefined : value));

const number = (fallback: number, check: (n: z.ZodNumber) => z.ZodNumber) =>
  z
    .string()
    .optional()
    .transform((value, ctx) => {
      if (value === undefined || value.trim() === '') return fallback;
      const parsed = Number(value);
      if (!Number.isFinite(parsed)) {
        ctx.addIssue({ code: 'custom', message: `expected a number, got "${value}"` });
        return z.NEVER;
      }
      const result = check(z.number()).safeParse(parsed);
      if (!result.success) {
        ctx.addIssue({ code: 'custom', message: `${result.error.issues[0]?.message ?? 'invalid'}, got "${value}"` });
        return z.NEVER;
      }
      return result.data;
    });

const url = optionalText.refine((value) => value === undefined || URL.canParse(value), {
  message: 'expected an absolute URL',
});

const envSchema = z.object({
  PORT: number(8080, (n) => n.int().min(0).max(65535)),
  HOST: optionalText.transform((v) => v ?? '0.0.0.0'),
  HTTP_HEADERS_TIMEOUT_S: number(10, (n) => n.positive().max(3600)),
  HTTP_REQUEST_TIMEOUT_S: number(30, (n) => n.positive().max(3600)),
  HTTP_KEEP_ALIVE_TIMEOUT_S: number(5, (n) => n.positive().max(3600)),
  OBSERVE_CACHE_S: number(1, (n) => n.min(0).max(60)),
  MAGIC_WORD: magicWordSchema,
  DATABASE_PATH: optionalText.transform((v) => v ?? './data/foresight.db'),
  DATABASE_BUSY_TIMEOUT_MS: number(5_000, (n) => n.int().min(0).max(600_000)),
  WORKER_BASE_URL: url,
  POKE_API_KEY: optionalText,
  POKE_API_URL: url.transform((v) => v ?? 'https://poke.com/api/v1/inbound-sms/webhook'),
  POKE_REQUEST_TIMEOUT_S: number(120, (n) => n.positive().max(3600)),
  MODAL_TOKEN_ID: optionalText,
  MODAL_TOKEN_SECRET: optionalText,
  FORESIGHT_MODAL_TOKEN_ID: optionalText,
  FORESIGHT_MODAL_TOKEN_SECRET: optionalText,
  MODAL_APP_NAME: optionalText.transform((v) => v ?? 'foresight-gemma3-vlm'),
  MODAL_CLASS_NAME: optionalText.transform((v) => v ?? 'Gemma3VLMSession'),
  VISION_CHUNK_SECONDS: number(1.0, (n) => n.positive().max(3600)),
  VISION_FRAMES_PER_CHUNK: number(6, (n) => n.int().min(1).max(64)),
  VISION_MAX_BUFFER_FRAMES: number(120, (n) => n.int().min(1).max(100_000)),
  VISION_PROMPT: optionalText.transform(
    (v) => v ?? 'Describe what the wearer is looking at in one short present-tense sentence.',
  ),
  VISION_MAX_FRAME_BYTES: number(4_194_304, (n) => n.int().min(1).max(64 * 1024 * 1024)),
  VISION_MAX_QUEUED_BYTES: number(65_536, (n) => n.int().min(16_384).max(64 * 1024 * 1024)),
  VISION_MAX_CONNECTIONS: number(10_000, (n) => n.int().min(1).max(1_000_000)),
  VISION_SLOW_CLIENT_TIMEOUT_S: number(30, (n) => n.positive().max(3600)),
  VISION_MAX_MESSAGES_PER_S: number(300, (n) => n.positive()),
  VISION_MAX_BYTES_PER_S: number(268_435_456, (n) => n.positive()),
  VISION_RATE_LIMIT_CLOSE_S: number(10, (n) => n.positive().max(3600)),
  VISION_PING_INTERVAL_S: number(15, (n) => n.positive().max(3600)),
  VISION_SUBPROTOCOLS: optionalText.transform((value, ctx) => {
    const names = value === undefined ? [] : value.split(',').map((name) => name.trim());
    if (names.some((name) => !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name))) {
      ctx.addIssue({ code: 'custom', message: `expected a comma-separated list of tokens, got "${value}"` });
      return z.NEVER;
    }
    return names;
  }),
  VISION_PEER_TIMEOUT_S: number(45, (n) => n.positive().max(3600)),
  VISION_INFERENCE_TIMEOUT_MS: number(30_000, (n) => n.int().min(1)),
  VISION_MAX_INFERENCE_FAILURES: number(3, (n) => n.int().min(1)),
  VISION_DEGRADED_COOLDOWN_S: number(30, (n) => n.min(0)),
  OPENAI_API_KEY: optionalText,
  OPENAI_BASE_URL: url,
  INTERVENTION_MODEL: optionalText.transform((v) => v ?? 'gpt-4o-mini'),
  INTERVENTION_TICK_SECONDS: number(60, (n) => n.positive()),
  INTERVENTION_TICK: onOff(true),
  INTERVENTION_NUDGE_COOLDOWN_S: number(300, (n) => n.min(0)),
  INSPECT: onOff(false),
  INSPECT_PORT: number(8081, (n) => n.int().min(0).max(65535)),
  INSPECT_HOST: optionalText.transform((v) => v ?? '127.0.0.1'),
  LOG_LEVEL: z
    .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
    .optional()
    .transform((v) => v ?? 'info'),
});

type Env = z.output<typeof envSchema>;

export interface Config {
  port: number;
  host: string;
  /**
   * A request whose headers are not all in after `headersTimeoutMs`, or that is
   * not all in after `requestTimeoutMs` (headers and body), gets 408; an idle
   * keep-alive connection is closed after `keepAliveTimeoutMs`.
   */
  http: { headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number };
  /**
   * `/metrics` and `/debug/actors` are rendered at most once per `cacheMs` (requests in that
   * time share the answer); `/debug/actors` lists at most `maxListedSessions` sessions.
   */
  observe: { cacheMs: number; maxListedSessions: number };
  magicWord: string | undefined;
  databasePath: string;
  /** How long a store write waits for another process's lock before failing (then 503). */
  databaseBusyTimeoutMs: number;
  workerBaseUrl: string | undefined;
  /** `requestTimeoutMs`: a `/poke/send` not delivered by then is cancelled (never sent after) and answered. */
  poke: { apiKey: string | undefined; url: string; requestTimeoutMs: number };
  modal: {
    tokenId: string | undefined;
    tokenSecret: string | undefined;
    appName: string;
    className: string;
  };
  vision: {
    chunkMs: number;
    framesPerChunk: number;
    maxBufferFrames: number;
    prompt: string;
    maxFrameBytes: number;
    /** Bytes queued for a peer past which its socket stops reading. */
    maxQueuedBytes: number;
    /** Glasses connections at once; an upgrade past them gets 503. */
    maxConnections: number;
    /** A client throttled (not reading its acks) this long is closed with 1008. */
    slowClientTimeoutMs: number;
    /** Per-connection rate limits: frames and bytes a second; over them this long, closed with 1008. */
    maxMessagesPerSecond: number;
    maxBytesPerSecond: number;
    rateLimitCloseMs: number;
    /** The server pings every connection this often; a peer silent for `peerTimeoutMs` is cut. */
    pingIntervalMs: number;
    peerTimeoutMs: number;
    /** WebSocket subprotocols the server speaks, in its order of preference (RFC 6455 §4.2.2). */
    subprotocols: string[];
    inferenceTimeoutMs: number;
    maxInferenceFailures: number;
    degradedCooldownMs: number;
  };
  openai: { apiKey: string | undefined; baseUrl: string | undefined };
  intervention: { model: string; tickMs: number; enabled: boolean; nudgeCooldownMs: number };
  /** The inspector relay listens on `host` (loopback by default, whatever HOST is). */
  inspect: { enabled: boolean; port: number; host: string };
  logLevel: Env['LOG_LEVEL'];
}

/** Raised at boot for a bad environment; the message names every bad variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Reads every setting from the environment once, or throws a ConfigError naming the bad variables. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  // A half pair of Modal credentials is a mistake worth stopping for.
  const tokenId = e.MODAL_TOKEN_ID ?? e.FORESIGHT_MODAL_TOKEN_ID;
  const tokenSecret = e.MODAL_TOKEN_SECRET ?? e.FORESIGHT_MODAL_TOKEN_SECRET;
  if ((tokenId === undefined) !== (tokenSecret === undefined)) {
    const missing = tokenId === undefined ? 'MODAL_TOKEN_ID' : 'MODAL_TOKEN_SECRET';
    throw new ConfigError(`invalid configuration: ${missing}: required when its pair is set`);
  }
  return {
    port: e.PORT,
    host: e.HOST,
    http: {
      headersTimeoutMs: Math.round(e.HTTP_HEADERS_TIMEOUT_S * 1000),
      requestTimeoutMs: Math.round(e.HTTP_REQUEST_TIMEOUT_S * 1000),
      keepAliveTimeoutMs: Math.round(e.HTTP_KEEP_ALIVE_TIMEOUT_S * 1000),
    },
    observe: { cacheMs: Math.round(e.OBSERVE_CACHE_S * 1000), maxListedSessions: 200 },
    magicWord: e.MAGIC_WORD,
    databasePath: e.DATABASE_PATH,
    databaseBusyTimeoutMs: e.DATABASE_BUSY_TIMEOUT_MS,
    workerBaseUrl: e.WORKER_BASE_URL,
    poke: { apiKey: e.POKE_API_KEY, url: e.POKE_API_URL, requestTimeoutMs: Math.round(e.POKE_REQUEST_TIMEOUT_S * 1000) },
    modal: { tokenId, tokenSecret, appName: e.MODAL_APP_NAME, className: e.MODAL_CLASS_NAME },
    vision: {
      chunkMs: Math.round(e.VISION_CHUNK_SECONDS * 1000),
      framesPerChunk: e.VISION_FRAMES_PER_CHUNK,
      maxBufferFrames: e.VISION_MAX_BUFFER_FRAMES,
      prompt: e.VISION_PROMPT,
      maxFrameBytes: e.VISION_MAX_FRAME_BYTES,
      maxQueuedBytes: e.VISION_MAX_QUEUED_BYTES,
      maxConnections: e.VISION_MAX_CONNECTIONS,
      slowClientTimeoutMs: Math.round(e.VISION_SLOW_CLIENT_TIMEOUT_S * 1000),
      maxMessagesPerSecond: e.VISION_MAX_MESSAGES_PER_S,
      maxBytesPerSecond: e.VISION_MAX_BYTES_PER_S,
      rateLimitCloseMs: Math.round(e.VISION_RATE_LIMIT_CLOSE_S * 1000),
      pingIntervalMs: Math.round(e.VISION_PING_INTERVAL_S * 1000),
      peerTimeoutMs: Math.round(e.VISION_PEER_TIMEOUT_S * 1000),
      subprotocols: e.VISION_SUBPROTOCOLS,
      inferenceTimeoutMs: e.VISION_INFERENCE_TIMEOUT_MS,
      maxInferenceFailures: e.VISION_MAX_INFERENCE_FAILURES,
      degradedCooldownMs: Math.round(e.VISION_DEGRADED_COOLDOWN_S * 1000),
    },
    openai: { apiKey: e.OPENAI_API_KEY, baseUrl: e.OPENAI_BASE_URL },
    intervention: {
      model: e.INTERVENTION_MODEL,
      tickMs: Math.round(e.INTERVENTION_TICK_SECONDS * 1000),
      enabled: e.INTERVENTION_TICK,
      nudgeCooldownMs: Math.round(e.INTERVENTION_NUDGE_COOLDOWN_S * 1000),
    },
    inspect: { enabled: e.INSPECT, port: e.INSPECT_PORT, host: e.INSPECT_HOST },
    logLevel: e.LOG_LEVEL,
  };
}
