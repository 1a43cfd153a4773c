import { Container, type StopParams } from '@cloudflare/containers';
import type { Env } from './env.ts';
import { errorText, log as logAs } from './log.ts';

/**
 * What the Node server in the container is told (SPEC §8): Modal credentials
 * and names, where to upload captions, the magic word, and no intervention
 * tick of its own (the Worker's cron runs it against D1).
 */
export function containerEnv(env: Env): Record<string, string> {
  const vars: Record<string, string | undefined> = {
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
