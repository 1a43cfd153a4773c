import { createExecutionContext } from 'cloudflare:test';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { containerEnv } from '../src/container.ts';
import type { Env } from '../src/env.ts';
import worker from '../src/index.ts';
import { BASE, call, MAGIC, testEnv } from './helpers.ts';

afterEach(() => vi.restoreAllMocks());

describe('auth edge (SPEC §8)', () => {
  it('serves /health without the magic word, from the container', async () => {
    const res = await call('/health', { magic: null });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ path: '/health', method: 'GET' });
  });

  it.each([
    ['no magic word', null],
    ['a wrong magic word', 'not-the-word'],
    ['a longer wrong word', `${MAGIC}x`],
  ])('answers 403 with %s in the header', async (_what, magic) => {
    const res = await call('/metrics', { magic });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ detail: 'forbidden' });
  });

  it('takes the magic word from ?magic_word= and refuses a wrong one there', async () => {
    const ok = await call(`/metrics?magic_word=${MAGIC}`, { magic: null });
    expect(ok.status).toBe(200);
    const wrong = await call('/metrics?magic_word=nope', { magic: null });
    expect(wrong.status).toBe(403);
  });

  it('refuses a WebSocket upgrade without the magic word before any relay', async () => {
    const res = await call('/vision/stream', { magic: null, headers: { upgrade: 'websocket' } });
    expect(res.status).toBe(403);
    expect(res.webSocket).toBeNull();
  });

  it('answers 404 for unknown paths and 405 with Allow for wrong methods', async () => {
    const missing = await call('/nope');
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ detail: 'not found' });
    for (const [path, method, allow] of [
      ['/biometrics/upload', 'GET', 'POST'],
      ['/captions/upload', 'PUT', 'POST'],
      ['/poke/send', 'GET', 'POST'],
      ['/metrics', 'POST', 'GET, HEAD'],
      ['/health', 'POST', 'GET, HEAD'],
      ['/vision/stream', 'POST', 'GET'],
    ]) {
      const res = await call(path!, { method: method!, ...(method === 'GET' ? {} : { body: '{}' }) });
      expect(res.status, `${method} ${path}`).toBe(405);
      expect(res.headers.get('allow')).toBe(allow);
    }
  });

  it('asks for an upgrade on /vision/stream without one', async () => {
    const res = await call('/vision/stream');
    expect(res.status).toBe(426);
  });
});

describe('proxied HTTP', () => {
  it('forwards other routes with the secrets as headers', async () => {
    const res = await call('/poke/send', { method: 'POST', body: '{"message":"hi"}' });
    const seen = (await res.json()) as { path: string; method: string; headers: Record<string, string> };
    expect(seen).toMatchObject({ path: '/poke/send', method: 'POST', body: '{"message":"hi"}' });
    expect(seen.headers).toMatchObject({
      'x-poke-api-key': 'pk-worker-secret',
      'x-modal-token-id': 'ak-worker-id',
      'x-modal-token-secret': 'as-worker-secret',
      'x-modal-app-name': 'foresight-gemma3-vlm',
      'x-modal-class-name': 'Gemma3VLMSession',
      'x-magic-word': MAGIC,
    });
  });

  it('sends every /poke/send with one Idempotency-Key to one container instance (finding 6)', async () => {
    for (const key of ['k-1', 'k-2', 'another key']) {
      const instances = new Set<string>();
      for (let i = 0; i < 6; i++) {
        const res = await call('/poke/send', { method: 'POST', body: '{"message":"hi"}', headers: { 'idempotency-key': key } });
        const seen = (await res.json()) as { instance: string; headers: Record<string, string> };
        expect(seen.headers['idempotency-key']).toBe(key);
        instances.add(seen.instance);
      }
      expect(instances.size).toBe(1);
      expect([...instances][0]).toMatch(/^instance-[0-2]$/);
    }
  });

  it('adds no secret to /health', async () => {
    const seen = (await (await call('/health', { magic: null })).json()) as { headers: Record<string, string> };
    expect(Object.keys(seen.headers).filter((h) => h.startsWith('x-poke') || h.startsWith('x-modal'))).toEqual([]);
  });

  it('spreads requests over BACKEND_INSTANCES container instances', async () => {
    const random = vi.spyOn(Math, 'random');
    const instances = new Set<string>();
    for (const r of [0, 0.4, 0.8, 0.1]) {
      random.mockReturnValueOnce(r);
      const seen = (await (await call('/metrics')).json()) as { instance: string };
      instances.add(seen.instance);
    }
    expect([...instances].sort()).toEqual(['instance-0', 'instance-1', 'instance-2']);
  });
});

describe('container configuration', () => {
  it('passes Modal credentials, the magic word and the Worker URL, and turns the tick off', () => {
    const vars = containerEnv({ ...(testEnv as unknown as Parameters<typeof containerEnv>[0]), WORKER_BASE_URL: BASE });
    expect(vars).toMatchObject({
      PORT: '8080',
      MAGIC_WORD: MAGIC,
      WORKER_BASE_URL: BASE,
      MODAL_TOKEN_ID: 'ak-worker-id',
      MODAL_TOKEN_SECRET: 'as-worker-secret',
      MODAL_APP_NAME: 'foresight-gemma3-vlm',
      MODAL_CLASS_NAME: 'Gemma3VLMSession',
      INTERVENTION_TICK: 'off',
    });
    expect(vars).not.toHaveProperty('OPENAI_API_KEY');
    expect(vars).toMatchObject({ VISION_PROVIDER: 'modal' });
    expect(vars).not.toHaveProperty('VISION_OPENAI_API_KEY');
    expect(Object.values(vars).every((v) => typeof v === 'string' && v !== '')).toBe(true);
  });

  const withVars = (vars: Record<string, string | undefined>) =>
    containerEnv({ ...(testEnv as unknown as Parameters<typeof containerEnv>[0]), ...vars } as Parameters<typeof containerEnv>[0]);

  it('passes the VISION_* settings on, with the OpenAI-compatible provider resolved by the server rule', () => {
    // VISION_PROVIDER=openai to OpenAI itself: the tick's key goes as the vision key, never as OPENAI_API_KEY.
    expect(withVars({ VISION_PROVIDER: 'openai', VISION_CHUNK_SECONDS: '2', VISION_OPENAI_MODEL: 'gpt-4.1-nano' })).toMatchObject({
      VISION_PROVIDER: 'openai',
      VISION_OPENAI_BASE_URL: 'https://api.openai.com/v1',
      VISION_OPENAI_API_KEY: 'sk-worker-openai',
      VISION_OPENAI_MODEL: 'gpt-4.1-nano',
      VISION_OPENAI_MAX_TOKENS: '60',
      VISION_OPENAI_DETAIL: 'low',
      VISION_CHUNK_SECONDS: '2',
    });
    // A server of its own, no Modal pair: picked by auto, and the tick's key stays with the Worker.
    const own = withVars({ MODAL_TOKEN_ID: undefined, MODAL_TOKEN_SECRET: undefined, VISION_OPENAI_BASE_URL: 'https://vllm.example/v1' });
    expect(own).toMatchObject({ VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: 'https://vllm.example/v1' });
    expect(own).not.toHaveProperty('VISION_OPENAI_API_KEY');
    expect(own).not.toHaveProperty('OPENAI_API_KEY');
    expect(withVars({ VISION_PROVIDER: 'none' })).toMatchObject({ VISION_PROVIDER: 'none' });
  });
});

describe('worker settings', () => {
  const direct = (vars: Record<string, string | undefined>, path = '/metrics') =>
    worker.fetch(
      new Request(`${BASE}${path}`, { headers: { 'x-magic-word': MAGIC } }) as Request<unknown, IncomingRequestCfProperties>,
      { ...(testEnv as unknown as Env), ...vars },
      createExecutionContext(),
    );

  it('refuses everything but /health when MAGIC_WORD is not set', async () => {
    const res = await direct({ MAGIC_WORD: undefined });
    expect(res.status).toBe(403);
    expect((await direct({ MAGIC_WORD: '' }, '/captions/upload')).status).toBe(403);
  });

  it('answers 500 naming a bad setting', async () => {
    const res = await direct({ BACKEND_INSTANCES: 'many' });
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({
      detail: 'invalid configuration: BACKEND_INSTANCES: expected a whole number from 1 to 100, got "many"',
    });
    const vision = await direct({ VISION_OPENAI_DETAIL: 'max' });
    expect(vision.status).toBe(500);
    expect(await vision.json()).toEqual({
      detail: 'invalid configuration: VISION_OPENAI_DETAIL: Invalid option: expected one of "low"|"high"|"auto"',
    });
  });
});
