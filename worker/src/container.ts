import { Container, type StopParams } from '@cloudflare/containers';
import { settingsOf, type Env } from './env.ts';
import { errorText, log as logAs } from './log.ts';

/**
 * What the Node server in the container is told (SPEC §8): Modal credentials
 * and names, where to upload captions, the magic word, the vision settings
 * (`VISION_*`, with the provider resolved here by the server's own rule, so a
 * container never sees the tick's OPENAI_API_KEY: only the key its frames
 * need), and no intervention tick of its own (the Worker's cron runs it
 * against D1).
 */
export function containerEnv(env: Env): Record<string, string> {
  const vision = settingsOf(env).visionProvider;
  const passed: Record<string, string | undefined> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith('VISION_') && typeof value === 'string') passed[name] = value;
  }
  const vars: Record<string, string | undefined> = {
    ...passed,
    VISION_PROVIDER: vision.kind,
    VISION_OPENAI_BASE_URL: vision.kind === 'openai' ? vision.baseUrl : undefined,
    VISION_OPENAI_API_KEY: vision.kind === 'openai' ? vision.apiKey : undefined,
    VISION_OPENAI_MODEL: vision.kind === 'openai' ? vision.model : passed.VISION_OPENAI_MODEL,
    VISION_OPENAI_MAX_TOKENS: vision.kind === 'openai' ? String(vision.maxTokens) : passed.VISION_OPENAI_MAX_TOKENS,
    VISION_OPENAI_DETAIL: vision.kind === 'openai' ? vision.detail : passed.VISION_OPENAI_DETAIL,
    PORT: '8080',
    HOST: '0.0.0.0',
    MAGIC_WORD: env.MAGIC_WORD,
    WORKER_BASE_URL: env.WORKER_BASE_URL,
    MODAL_TOKEN_ID: env.MODAL_TOKEN_ID,
    MODAL_TOKEN_SECRET: env.MODAL_TOKEN_SECRET,
    MODAL_APP_NAME: env.MODAL_APP_NAME,
    MODAL_CLASS_NAME: env.MODAL_CLASS_NAME,
    INTERVENTION_TICK: 'off',
    LOG_LEVEL: env.LOG_LEVEL,
  };
  return Object.fromEntries(Object.entries(vars).filter((e): e is [string, string] => e[1] !== undefined && e[1] !== ''));
}

const log = (fields: Record<string, unknown>) => logAs('container', fields);

/** The Node server (the repository's Dockerfile) behind a Durable Object. */
export class BackendContainer extends Container<Env> {
  override defaultPort = 8080;
  // Glasses sessions are long; an idle instance sleeps after 15 minutes without requests.
  override sleepAfter = '15m';
  override envVars = containerEnv(this.env);

  override onStart(): void {
    log({ msg: 'container started', id: this.ctx.id.toString() });
  }

  override onStop(params: StopParams): void {
    log({ msg: 'container stopped', id: this.ctx.id.toString(), exitCode: params.exitCode, reason: params.reason });
  }

  override onError(error: unknown): unknown {
    log({ msg: 'container error', id: this.ctx.id.toString(), err: errorText(error) });
    throw error;
  }
}
