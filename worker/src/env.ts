import { z } from 'zod';
import { magicWordSchema } from '../../src/auth.ts';
import { visionProviderFromEnv, type VisionProvider } from '../../src/config.ts';
import type { BackendContainer } from './container.ts';

/** Bindings, vars and secrets of the Worker (wrangler.jsonc; secrets with `wrangler secret put`). */
export interface Env {
  DB: D1Database;
  BACKEND: DurableObjectNamespace<BackendContainer>;
  MAGIC_WORD?: string;
  WORKER_BASE_URL?: string;
  MODAL_TOKEN_ID?: string;
  MODAL_TOKEN_SECRET?: string;
  MODAL_APP_NAME?: string;
  MODAL_CLASS_NAME?: string;
  POKE_API_KEY?: string;
  POKE_API_URL?: string;
  OPENAI_API_KEY?: string;
  OPENAI_BASE_URL?: string;
  INTERVENTION_MODEL?: string;
  INTERVENTION_NUDGE_COOLDOWN_S?: string;
  /**
   * The containers' vision provider (src/config.ts `visionProviderFromEnv`), resolved here and
   * passed on explicitly; VISION_OPENAI_API_KEY is a secret. Every other `VISION_*` variable is
   * passed on as it is.
   */
  VISION_PROVIDER?: string;
  VISION_OPENAI_BASE_URL?: string;
  VISION_OPENAI_API_KEY?: string;
  VISION_OPENAI_MODEL?: string;
  VISION_OPENAI_MAX_TOKENS?: string;
  VISION_OPENAI_DETAIL?: string;
  /** Container instances glasses connections are spread over. */
  BACKEND_INSTANCES?: string;
  LOG_LEVEL?: string;
}

const text = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v.trim()));
const count = (fallback: number, min: number, max: number) =>
  z
    .string()
    .optional()
    .transform((v, ctx) => {
      if (v === undefined || v.trim() === '') return fallback;
      const n = Number(v);
      if (Number.isInteger(n) && n >= min && n <= max) return n;
      ctx.addIssue({ code: 'custom', message: `expected a whole number from ${min} to ${max}, got "${v}"` });
      return z.NEVER;
    });

const settingsSchema = z.object({
  // The server's rule (src/auth.ts): never trimmed, so the container gets the word the Worker checks.
  MAGIC_WORD: magicWordSchema,
  BACKEND_INSTANCES: count(3, 1, 100),
  INTERVENTION_NUDGE_COOLDOWN_S: count(300, 0, 86_400),
  INTERVENTION_MODEL: text.transform((v) => v ?? 'gpt-4o-mini'),
  POKE_API_URL: text.pipe(z.url().optional()).transform((v) => v ?? 'https://poke.com/api/v1/inbound-sms/webhook'),
  OPENAI_BASE_URL: text.pipe(z.url().optional()),
});

export type Settings = z.output<typeof settingsSchema> & { visionProvider: VisionProvider };

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const parsedSettings = new WeakMap<Env, Settings>();

/** The Worker's settings, validated with zod once per `env` object; a bad value names the variable. */
export function settingsOf(env: Env): Settings {
  const known = parsedSettings.get(env);
  if (known) return known;
  const parsed = settingsSchema.safeParse(env);
  if (parsed.success) {
    let visionProvider: VisionProvider;
    try {
      visionProvider = visionProviderFromEnv(env as unknown as Record<string, unknown>);
    } catch (error) {
      throw new ConfigError(error instanceof Error ? error.message : String(error));
    }
    const settings = { ...parsed.data, visionProvider };
    parsedSettings.set(env, settings);
    return settings;
  }
  const issue = parsed.error.issues[0];
  throw new ConfigError(`invalid configuration: ${issue?.path.join('.') ?? '?'}: ${issue?.message ?? 'invalid'}`);
}
