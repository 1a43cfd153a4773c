import { getContainer, getRandom } from '@cloudflare/containers';
import { secretsEqual } from '../../src/auth.ts';
import {
  answerUpload,
  biometricUploadSchema,
  captionUploadSchema,
  encodingRefusal,
  MAX_UPLOAD_BYTES,
  TOO_LARGE,
  type JsonBodyRequest,
  type UploadAnswer,
} from '../../src/schemas/uploads.ts';
import { runCronTick } from './cron.ts';
import { d1Store } from './d1-store.ts';
import { ConfigError, settingsOf, type Env, type Settings } from './env.ts';
import { errorText, log as logAs } from './log.ts';
import { relayWebSocket } from './relay.ts';

export { BackendContainer } from './container.ts';


const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  Response.json(body, { status, headers });
const log = (fields: Record<string, unknown>) => logAs('worker', fields);

/** FNV-1a of a string, unsigned. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/** Routes the container serves, with their methods; anything else is a 404 here. */
const CONTAINER_ROUTES: Record<string, string[]> = {
  '/poke/send': ['POST'],
  '/metrics': ['GET', 'HEAD'],
  '/debug/actors': ['GET', 'HEAD'],
};
const VISION_PATH = '/vision/stream';

/** The magic word a request carries (header, else query), compared in constant time. Unset: nothing passes. */
function authorized(request: Request, url: URL, settings: Settings): boolean {
  if (settings.MAGIC_WORD === undefined) return false;
  const given = request.headers.get('x-magic-word') ?? url.searchParams.get('magic_word');
  return given !== null && secretsEqual(given, settings.MAGIC_WORD);
}

const methodNotAllowed = (allow: string[]) => json(405, { detail: 'method not allowed' }, { allow: allow.join(', ') });

/** Proxied HTTP carries the Worker's secrets as headers (SPEC §8); WebSocket upgrades and /health do not. */
function withSecrets(request: Request, env: Env): Request {
  const headers = new Headers(request.headers);
  if (env.POKE_API_KEY) headers.set('x-poke-api-key', env.POKE_API_KEY);
  if (env.MODAL_TOKEN_ID && env.MODAL_TOKEN_SECRET) {
    headers.set('x-modal-token-id', env.MODAL_TOKEN_ID);
    headers.set('x-modal-token-secret', env.MODAL_TOKEN_SECRET);
    if (env.MODAL_APP_NAME) headers.set('x-modal-app-name', env.MODAL_APP_NAME);
    if (env.MODAL_CLASS_NAME) headers.set('x-modal-class-name', env.MODAL_CLASS_NAME);
  }
  return new Request(request, { headers });
}

/**
 * An upload (SPEC §8): the body read whole (a declared length over
 * `MAX_UPLOAD_BYTES` is refused unread), then checked and stored by the rules
 * the Node server uses too (`answerUpload`).
 */
async function upload(request: Request, answer: (request: JsonBodyRequest) => Promise<UploadAnswer>): Promise<Response> {
  const contentEncoding = request.headers.get('content-encoding');
  const encoded = encodingRefusal(contentEncoding);
  if (encoded) return json(encoded.status, encoded.body);
  const declared = Number(request.headers.get('content-length') ?? 0);
  if (declared > MAX_UPLOAD_BYTES) return json(TOO_LARGE.status, TOO_LARGE.body);
  const bytes = await readAtMost(request, MAX_UPLOAD_BYTES);
  if (!bytes) return json(TOO_LARGE.status, TOO_LARGE.body);
  const { status, body } = await answer({ contentType: request.headers.get('content-type'), contentEncoding, bytes });
  return json(status, body);
}

/** The body, or undefined as soon as it runs over `limit` bytes (a chunked body declares no length). */
async function readAtMost(request: Request, limit: number): Promise<Uint8Array | undefined> {
  if (!request.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return bytes;
}

const storeFailed = (error: unknown) => log({ msg: 'D1 write failed', err: errorText(error) });

async function route(request: Request, env: Env, ctx: ExecutionContext): Promise<Response> {
  const url = new URL(request.url);
  const settings = settingsOf(env);
  const backend = () => getRandom(env.BACKEND, settings.BACKEND_INSTANCES);

  if (url.pathname === '/health') {
    if (request.method !== 'GET' && request.method !== 'HEAD') return methodNotAllowed(['GET', 'HEAD']);
    return (await backend()).fetch(request);
  }
  if (!authorized(request, url, settings)) return json(403, { detail: 'forbidden' });

  const store = d1Store(env.DB);
  switch (url.pathname) {
    case '/biometrics/upload':
      if (request.method !== 'POST') return methodNotAllowed(['POST']);
      return upload(request, (body) => answerUpload(biometricUploadSchema, body, (b) => store.insertBiometricWindow(b), storeFailed));
    case '/captions/upload':
      if (request.method !== 'POST') return methodNotAllowed(['POST']);
      return upload(request, (body) => answerUpload(captionUploadSchema, body, (c) => store.insertCaptionWindow(c), storeFailed));
    case VISION_PATH:
      if (request.method !== 'GET') return methodNotAllowed(['GET']);
      if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
        return json(426, { detail: 'expected a WebSocket upgrade' }, { upgrade: 'websocket' });
      }
      return relayWebSocket(request, await backend(), (caption) =>
        ctx.waitUntil(
          store.insertCaptionWindow(caption).catch((error: unknown) =>
            log({ msg: 'caption not stored', windowId: caption.windowId, err: errorText(error) }),
          ),
        ),
      );
  }
  const methods = CONTAINER_ROUTES[url.pathname];
  if (!methods) return json(404, { detail: 'not found' });
  if (!methods.includes(request.method)) return methodNotAllowed(methods);
  // A retried /poke/send with an Idempotency-Key must reach the container that kept the key's
  // first outcome: the key picks the instance (the instances getRandom spreads over).
  const key = url.pathname === '/poke/send' ? request.headers.get('idempotency-key') : null;
  const target = key === null ? await backend() : getContainer(env.BACKEND, `instance-${fnv1a(key) % settings.BACKEND_INSTANCES}`);
  return target.fetch(withSecrets(request, env));
}

export default {
  async fetch(request, env, ctx): Promise<Response> {
    try {
      const response = await route(request, env, ctx);
      // A body nobody read (a 403, 405 or oversized upload) is discarded, not left half-sent.
      if (request.body && !request.bodyUsed) await request.body.cancel();
      return response;
    } catch (error) {
      const message = error instanceof ConfigError ? error.message : 'internal error';
      log({ msg: 'request failed', err: errorText(error) });
      return json(500, { detail: message });
    }
  },

  // Awaited, so a tick that crashes (D1 down, a bad setting) marks the cron invocation failed.
  async scheduled(controller, env, _ctx): Promise<void> {
    try {
      await runCronTick(env, controller.scheduledTime);
    } catch (error) {
      log({ msg: 'intervention tick crashed', err: errorText(error) });
      throw error;
    }
  },
} satisfies ExportedHandler<Env>;
