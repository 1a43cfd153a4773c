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

/**
 * `fetch` refuses a URL with a user name or password in it (every request would
 * fail), and such a URL would carry a password into logs and error messages.
 */
const withoutUserInfo = (value: string | undefined) => {
  const parsed = value === undefined ? null : URL.parse(value);
  return parsed === null || (parsed.username === '' && parsed.password === '');
};
const NO_USER_INFO = { message: 'must not contain a user name or password (keys have their own variables)' };

/** An http(s) URL: `localhost:11434/v1` parses as a URL with scheme `localhost:`, so the scheme is checked. */
const httpUrl = optionalText
  .refine((value) => value === undefined || /^https?:$/.test(URL.parse(value)?.protocol ?? ''), {
    message: 'expected an http:// or https:// URL',
  })
  .refine(withoutUserInfo, NO_USER_INFO);

const envSchema = z.object({
  PORT: number(8080, (n) => n.int().min(0).max(65535)),
  HOST: optionalText.transform((v) => v ?? '0.0.0.0'),
  HTTP_HEADERS_TIMEOUT_S: number(10, (n) => n.positive().max(3600)),
  HTTP_REQUEST_TIMEOUT_S: number(30, (n) => n.positive().max(3600)),
  HTTP_KEEP_ALIVE_TIMEOUT_S: number(5, (n) => n.positive().max(3600)),
  HTTP_MAX_BODY_BYTES_IN_FLIGHT: number(64 * 1024 * 1024, (n) => n.int().min(256 * 1024).max(4 * 1024 * 1024 * 1024)),
  OBSERVE_CACHE_S: number(1, (n) => n.min(0).max(60)),
  MAGIC_WORD: magicWordSchema,
  DATABASE_PATH: optionalText.transform((v) => v ?? './data/foresight.db'),
  DATABASE_BUSY_TIMEOUT_MS: number(5_000, (n) => n.int().min(0).max(600_000)),
  WORKER_BASE_URL: httpUrl,
  POKE_API_KEY: optionalText,
  POKE_API_URL: httpUrl.transform((v) => v ?? 'https://poke.com/api/v1/inbound-sms/webhook'),
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
  VISION_INFERENCE_TIMEOUT_MS: number(30_000, (n) => n.int().min(1).max(600_000)),
  VISION_HISTORY_CAPTIONS: number(6, (n) => n.int().min(0).max(64)),
  VISION_MAX_INFERENCE_FAILURES: number(3, (n) => n.int().min(1)),
  VISION_DEGRADED_COOLDOWN_S: number(30, (n) => n.min(0).max(3600)),
  VISION_PROVIDER: z
    .enum(['auto', 'modal', 'openai', 'none'])
    .optional()
    .transform((v) => v ?? 'auto'),
  VISION_OPENAI_BASE_URL: httpUrl,
  VISION_OPENAI_API_KEY: optionalText,
  VISION_OPENAI_MODEL: optionalText.transform((v) => v ?? 'gpt-4o-mini'),
  VISION_OPENAI_MAX_TOKENS: number(60, (n) => n.int().min(1).max(4096)),
  VISION_OPENAI_DETAIL: z
    .enum(['low', 'high', 'auto'])
    .optional()
    .transform((v) => v ?? 'low'),
  OPENAI_API_KEY: optionalText,
  OPENAI_BASE_URL: httpUrl,
  INTERVENTION_MODEL: optionalText.transform((v) => v ?? 'gpt-4o-mini'),
  INTERVENTION_TICK_SECONDS: number(60, (n) => n.positive().max(86_400)),
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
   * keep-alive connection is closed after `keepAliveTimeoutMs`. Request bodies
   * being read at once may add up to `maxBodyBytesInFlight` (each counted at its
   * declared length, or its route's limit when it declares none); past that a
   * request gets 503 unread.
   */
  http: { headersTimeoutMs: number; requestTimeoutMs: number; keepAliveTimeoutMs: number; maxBodyBytesInFlight: number };
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
    /** Captions a session keeps and sends with every chunk, oldest first; 0 sends none. */
    historyCaptions: number;
    maxInferenceFailures: number;
    degradedCooldownMs: number;
  };
  /** Who captions a connection's chunks when it brings no Modal headers of its own (`VisionProvider`). */
  visionProvider: VisionProvider;
  openai: { apiKey: string | undefined; baseUrl: string | undefined };
  intervention: { model: string; tickMs: number; enabled: boolean; nudgeCooldownMs: number };
  /** The inspector relay listens on `host` (loopback by default, whatever HOST is). */
  inspect: { enabled: boolean; port: number; host: string };
  logLevel: Env['LOG_LEVEL'];
}

/**
 * The server's vision model. `modal`: the deployed Modal class (a session
 * without a token pair is degraded `no-credentials`, as before there was a
 * choice). `openai`: any OpenAI-compatible Chat Completions endpoint with
 * image inputs (OpenAI, Ollama, vLLM, llama.cpp, LM Studio); `apiKey`
 * undefined sends no Authorization header. `none`: no captions. `chosenBy`
 * says whether VISION_PROVIDER named it or `auto` picked it.
 */
export type VisionProvider = { chosenBy: 'VISION_PROVIDER' | 'auto' } & (
  | { kind: 'modal' }
  | { kind: 'none' }
  | {
      kind: 'openai';
      baseUrl: string;
      apiKey: string | undefined;
      model: string;
      /** `max_tokens` of each request: the caption is one sentence. */
      maxTokens: number;
      /** The image parts' `detail`; `low` is a fixed 85 tokens an image at OpenAI. */
      detail: 'low' | 'high' | 'auto';
    }
);

const OPENAI_DEFAULT_BASE_URL = 'https://api.openai.com/v1';

/** The variables the vision provider is chosen from; the Worker resolves them too (`visionProviderFromEnv`). */
const visionEnvSchema = envSchema.pick({
  VISION_PROVIDER: true,
  VISION_OPENAI_BASE_URL: true,
  VISION_OPENAI_API_KEY: true,
  VISION_OPENAI_MODEL: true,
  VISION_OPENAI_MAX_TOKENS: true,
  VISION_OPENAI_DETAIL: true,
  OPENAI_API_KEY: true,
  OPENAI_BASE_URL: true,
  MODAL_TOKEN_ID: true,
  MODAL_TOKEN_SECRET: true,
  FORESIGHT_MODAL_TOKEN_ID: true,
  FORESIGHT_MODAL_TOKEN_SECRET: true,
});

/** Two API roots are the same when they name the same origin and path (case of the host, a default port and trailing slashes aside). */
const sameApiRoot = (a: string, b: string) => apiRoot(a) === apiRoot(b);
const apiRoot = (value: string) => {
  const parsed = new URL(value);
  // `api.openai.com.` (a fully qualified name) is `api.openai.com`.
  return `${parsed.protocol}//${parsed.host.replace(/\.(?=:\d+$|$)/, '')}${parsed.pathname.replace(/\/+$/, '')}${parsed.search}`;
};

/**
 * `auto`: Modal when a token pair is set, else the OpenAI-compatible provider
 * when a `VISION_OPENAI_*` endpoint or key is set, else Modal without
 * credentials (no captions, sessions degraded `no-credentials`). OPENAI_API_KEY
 * alone, set for the intervention tick, never sends camera frames anywhere.
 *
 * The key: VISION_OPENAI_API_KEY, else OPENAI_API_KEY only when the frames go
 * where the tick's requests go (the same API root), so the tick's key is never
 * sent to another host (a local or third-party server gets a key only when
 * given one). Throws a ConfigError when the frames would go to OpenAI without
 * a key.
 */
function visionProvider(e: z.output<typeof visionEnvSchema>, hasModalPair: boolean): VisionProvider {
  const named = e.VISION_PROVIDER;
  const kind = named !== 'auto' ? named : hasModalPair ? 'modal' : e.VISION_OPENAI_BASE_URL || e.VISION_OPENAI_API_KEY ? 'openai' : 'modal';
  const chosenBy = named === 'auto' ? 'auto' : 'VISION_PROVIDER';
  if (kind !== 'openai') return { kind, chosenBy };
  const tickRoot = e.OPENAI_BASE_URL ?? OPENAI_DEFAULT_BASE_URL;
  const baseUrl = e.VISION_OPENAI_BASE_URL ?? tickRoot;
  const apiKey = e.VISION_OPENAI_API_KEY ?? (sameApiRoot(baseUrl, tickRoot) ? e.OPENAI_API_KEY : undefined);
  if (apiKey === undefined && sameApiRoot(baseUrl, OPENAI_DEFAULT_BASE_URL)) {
    throw new ConfigError(
      'invalid configuration: VISION_PROVIDER: openai needs VISION_OPENAI_API_KEY or OPENAI_API_KEY, or a VISION_OPENAI_BASE_URL that needs no key',
    );
  }
  return {
    kind,
    chosenBy,
    baseUrl,
    apiKey,
    model: e.VISION_OPENAI_MODEL,
    maxTokens: e.VISION_OPENAI_MAX_TOKENS,
    detail: e.VISION_OPENAI_DETAIL,
  };
}

/**
 * The vision provider the server would choose on `env`, from the vision,
 * OpenAI and Modal variables only (the Worker resolves it for its containers).
 * Throws a ConfigError naming a bad variable.
 */
export function visionProviderFromEnv(env: Record<string, unknown>): VisionProvider {
  const parsed = visionEnvSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    throw new ConfigError(`invalid configuration: ${lines.join('; ')}`);
  }
  const e = parsed.data;
  const hasPair = (e.MODAL_TOKEN_ID ?? e.FORESIGHT_MODAL_TOKEN_ID) !== undefined && (e.MODAL_TOKEN_SECRET ?? e.FORESIGHT_MODAL_TOKEN_SECRET) !== undefined;
  return visionProvider(e, hasPair);
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
      maxBodyBytesInFlight: e.HTTP_MAX_BODY_BYTES_IN_FLIGHT,
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
      historyCaptions: e.VISION_HISTORY_CAPTIONS,
      maxInferenceFailures: e.VISION_MAX_INFERENCE_FAILURES,
      degradedCooldownMs: Math.round(e.VISION_DEGRADED_COOLDOWN_S * 1000),
    },
    visionProvider: visionProvider(e, tokenId !== undefined),
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
