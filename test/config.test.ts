import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.ts';
import { MAGIC_WORD_ERROR, MAGIC_WORDS } from './fixtures/magic-words.ts';

describe('loadConfig (SPEC §10)', () => {
  it('gives the documented defaults for an empty environment', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8080);
    expect(config.host).toBe('0.0.0.0');
    expect(config.magicWord).toBeUndefined();
    expect(config.databasePath).toBe('./data/foresight.db');
    expect(config.poke.url).toBe('https://poke.com/api/v1/inbound-sms/webhook');
    expect(config.modal).toEqual({
      tokenId: undefined,
      tokenSecret: undefined,
      appName: 'foresight-gemma3-vlm',
      className: 'Gemma3VLMSession',
    });
    expect(config.vision).toMatchObject({
      chunkMs: 1000,
      framesPerChunk: 6,
      maxBufferFrames: 120,
      maxFrameBytes: 4_194_304,
      inferenceTimeoutMs: 30_000,
      historyCaptions: 6,
      maxInferenceFailures: 3,
      degradedCooldownMs: 30_000,
      maxQueuedBytes: 65_536,
      maxConnections: 10_000,
      slowClientTimeoutMs: 30_000,
      maxMessagesPerSecond: 300,
      maxBytesPerSecond: 268_435_456,
      rateLimitCloseMs: 10_000,
      pingIntervalMs: 15_000,
      peerTimeoutMs: 45_000,
      subprotocols: [],
    });
    expect(config.intervention).toEqual({ model: 'gpt-4o-mini', tickMs: 60_000, enabled: true, nudgeCooldownMs: 300_000 });
    expect(config.inspect).toEqual({ enabled: false, port: 8081, host: '127.0.0.1' });
    expect(config.observe).toEqual({ cacheMs: 1000, maxListedSessions: 200 });
    expect(config.visionProvider).toEqual({ kind: 'modal', chosenBy: 'auto' });
    expect(config.logLevel).toBe('info');
  });

  it('reads values and switches', () => {
    const config = loadConfig({
      PORT: '9000',
      VISION_CHUNK_SECONDS: '0.5',
      INSPECT: 'on',
      INTERVENTION_TICK: 'off',
      FORESIGHT_MODAL_TOKEN_ID: 'ak-1',
      FORESIGHT_MODAL_TOKEN_SECRET: 'as-1',
    });
    expect(config.port).toBe(9000);
    expect(config.vision.chunkMs).toBe(500);
    expect(config.inspect.enabled).toBe(true);
    expect(config.intervention.enabled).toBe(false);
    expect(config.modal.tokenId).toBe('ak-1');
  });

  const PAIR = { MODAL_TOKEN_ID: 'ak-1', MODAL_TOKEN_SECRET: 'as-1' };
  it.each([
    ['nothing set', {}, { kind: 'modal', chosenBy: 'auto' }],
    ['OPENAI_API_KEY alone, set for the tick, sends no frames', { OPENAI_API_KEY: 'sk-tick' }, { kind: 'modal', chosenBy: 'auto' }],
    ['a Modal pair', PAIR, { kind: 'modal', chosenBy: 'auto' }],
    ['a Modal pair wins over VISION_OPENAI_*', { ...PAIR, VISION_OPENAI_API_KEY: 'sk-v' }, { kind: 'modal', chosenBy: 'auto' }],
    [
      'VISION_OPENAI_API_KEY',
      { VISION_OPENAI_API_KEY: 'sk-v', OPENAI_API_KEY: 'sk-tick' },
      { kind: 'openai', chosenBy: 'auto', baseUrl: 'https://api.openai.com/v1', apiKey: 'sk-v', model: 'gpt-4o-mini', maxTokens: 60, detail: 'low' },
    ],
    [
      'a key-less local base URL',
      { VISION_OPENAI_BASE_URL: 'http://127.0.0.1:11434/v1', VISION_OPENAI_MODEL: 'gemma3:4b' },
      { kind: 'openai', chosenBy: 'auto', baseUrl: 'http://127.0.0.1:11434/v1', apiKey: undefined, model: 'gemma3:4b', maxTokens: 60, detail: 'low' },
    ],
    [
      'VISION_PROVIDER=openai with the tick key and base URL',
      { VISION_PROVIDER: 'openai', OPENAI_API_KEY: 'sk-tick', OPENAI_BASE_URL: 'http://proxy.test/v1', VISION_OPENAI_MAX_TOKENS: '30', VISION_OPENAI_DETAIL: 'high' },
      { kind: 'openai', chosenBy: 'VISION_PROVIDER', baseUrl: 'http://proxy.test/v1', apiKey: 'sk-tick', model: 'gpt-4o-mini', maxTokens: 30, detail: 'high' },
    ],
    [
      "the tick's key is not sent to another API root",
      { VISION_OPENAI_BASE_URL: 'https://vllm.example/v1', OPENAI_API_KEY: 'sk-tick' },
      { kind: 'openai', chosenBy: 'auto', baseUrl: 'https://vllm.example/v1', apiKey: undefined, model: 'gpt-4o-mini', maxTokens: 60, detail: 'low' },
    ],
    [
      "the tick's key goes with the frames to the tick's own API root",
      { VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: 'https://api.openai.com/v1/', OPENAI_API_KEY: 'sk-tick' },
      { kind: 'openai', chosenBy: 'VISION_PROVIDER', baseUrl: 'https://api.openai.com/v1/', apiKey: 'sk-tick', model: 'gpt-4o-mini', maxTokens: 60, detail: 'low' },
    ],
    [
      "the tick's own API root spelled another way (host case, default port) is still the tick's",
      { VISION_OPENAI_BASE_URL: 'https://API.OpenAI.com:443/v1', OPENAI_API_KEY: 'sk-tick' },
      { kind: 'openai', chosenBy: 'auto', baseUrl: 'https://API.OpenAI.com:443/v1', apiKey: 'sk-tick', model: 'gpt-4o-mini', maxTokens: 60, detail: 'low' },
    ],
    [
      'another path on the same host is another API root',
      { VISION_OPENAI_BASE_URL: 'https://api.openai.com/other/v1', OPENAI_API_KEY: 'sk-tick' },
      { kind: 'openai', chosenBy: 'auto', baseUrl: 'https://api.openai.com/other/v1', apiKey: undefined, model: 'gpt-4o-mini', maxTokens: 60, detail: 'low' },
    ],
    ['VISION_PROVIDER=none', { VISION_PROVIDER: 'none', ...PAIR }, { kind: 'none', chosenBy: 'VISION_PROVIDER' }],
    ['VISION_PROVIDER=modal without a pair', { VISION_PROVIDER: 'modal', VISION_OPENAI_API_KEY: 'sk-v' }, { kind: 'modal', chosenBy: 'VISION_PROVIDER' }],
  ])('VISION_PROVIDER: %s', (_why, env, provider) => {
    expect(loadConfig(env).visionProvider).toEqual(provider);
  });

  it('treats empty values as unset', () => {
    expect(loadConfig({ PORT: '', MAGIC_WORD: '' })).toMatchObject({ port: 8080, magicWord: undefined });
  });

  it.each([
    [{ VISION_CHUNK_SECONDS: 'abc' }, 'invalid configuration: VISION_CHUNK_SECONDS: expected a number, got "abc"'],
    [{ PORT: '-1' }, 'invalid configuration: PORT: Too small: expected number to be >=0, got "-1"'],
    [{ PORT: '70000' }, 'invalid configuration: PORT: Too big: expected number to be <=65535, got "70000"'],
    [{ PORT: '80.5' }, 'invalid configuration: PORT: Invalid input: expected int, received number, got "80.5"'],
    [{ VISION_FRAMES_PER_CHUNK: '0' }, 'invalid configuration: VISION_FRAMES_PER_CHUNK: Too small: expected number to be >=1, got "0"'],
    [{ VISION_CHUNK_SECONDS: '-1' }, 'invalid configuration: VISION_CHUNK_SECONDS: Too small: expected number to be >0, got "-1"'],
    [{ INSPECT: 'maybe' }, 'invalid configuration: INSPECT: expected on/off, got "maybe"'],
    [{ POKE_API_URL: 'not a url' }, 'invalid configuration: POKE_API_URL: expected an http:// or https:// URL'],
    [{ POKE_API_URL: 'file:///etc/passwd' }, 'invalid configuration: POKE_API_URL: expected an http:// or https:// URL'],
    [{ WORKER_BASE_URL: 'javascript:alert(1)' }, 'invalid configuration: WORKER_BASE_URL: expected an http:// or https:// URL'],
    [{ MODAL_TOKEN_ID: 'ak-1' }, 'invalid configuration: MODAL_TOKEN_SECRET: required when its pair is set'],
    [
      { VISION_PROVIDER: 'openai' },
      'invalid configuration: VISION_PROVIDER: openai needs VISION_OPENAI_API_KEY or OPENAI_API_KEY, or a VISION_OPENAI_BASE_URL that needs no key',
    ],
    [
      { VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: 'https://api.openai.com/v1' },
      'invalid configuration: VISION_PROVIDER: openai needs VISION_OPENAI_API_KEY or OPENAI_API_KEY, or a VISION_OPENAI_BASE_URL that needs no key',
    ],
    [{ VISION_PROVIDER: 'gemini' }, 'invalid configuration: VISION_PROVIDER: Invalid option: expected one of "auto"|"modal"|"openai"|"none"'],
    [{ VISION_OPENAI_DETAIL: 'max' }, 'invalid configuration: VISION_OPENAI_DETAIL: Invalid option: expected one of "low"|"high"|"auto"'],
    [{ VISION_OPENAI_MAX_TOKENS: '0' }, 'invalid configuration: VISION_OPENAI_MAX_TOKENS: Too small: expected number to be >=1, got "0"'],
    [{ VISION_OPENAI_BASE_URL: 'localhost:11434/v1' }, 'invalid configuration: VISION_OPENAI_BASE_URL: expected an http:// or https:// URL'],
    [{ OPENAI_BASE_URL: 'not a url' }, 'invalid configuration: OPENAI_BASE_URL: expected an http:// or https:// URL'],
    [
      { VISION_OPENAI_BASE_URL: 'http://user:hunter2@127.0.0.1:11434/v1' },
      'invalid configuration: VISION_OPENAI_BASE_URL: must not contain a user name or password (keys have their own variables)',
    ],
    [
      { OPENAI_BASE_URL: 'https://key@api.example.com/v1' },
      'invalid configuration: OPENAI_BASE_URL: must not contain a user name or password (keys have their own variables)',
    ],
    [
      { POKE_API_URL: 'https://a:b@poke.example/hook' },
      'invalid configuration: POKE_API_URL: must not contain a user name or password (keys have their own variables)',
    ],
    [
      { VISION_INFERENCE_TIMEOUT_MS: '3000000000' },
      'invalid configuration: VISION_INFERENCE_TIMEOUT_MS: Too big: expected number to be <=600000, got "3000000000"',
    ],
    [{ VISION_DEGRADED_COOLDOWN_S: '1e9' }, 'invalid configuration: VISION_DEGRADED_COOLDOWN_S: Too big: expected number to be <=3600, got "1e9"'],
    [{ INTERVENTION_TICK_SECONDS: '2592000' }, 'invalid configuration: INTERVENTION_TICK_SECONDS: Too big: expected number to be <=86400, got "2592000"'],
    [
      { VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: 'https://api.openai.com./v1' },
      'invalid configuration: VISION_PROVIDER: openai needs VISION_OPENAI_API_KEY or OPENAI_API_KEY, or a VISION_OPENAI_BASE_URL that needs no key',
    ],
    [
      { VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: 'https://API.OpenAI.com:443/v1/' },
      'invalid configuration: VISION_PROVIDER: openai needs VISION_OPENAI_API_KEY or OPENAI_API_KEY, or a VISION_OPENAI_BASE_URL that needs no key',
    ],
  ])('rejects %j naming the variable', (env, message) => {
    expect(() => loadConfig(env)).toThrow(new ConfigError(message));
  });

  it('names every bad variable at once', () => {
    expect(() => loadConfig({ PORT: 'x', LOG_LEVEL: 'loud' })).toThrow(/PORT: .*; LOG_LEVEL: /);
  });

  it('stops the server with exit code 1 and a message naming the variable', () => {
    const result = spawnSync(process.execPath, ['src/main.ts'], {
      env: { ...process.env, VISION_CHUNK_SECONDS: 'abc', PORT: '0' },
      encoding: 'utf8',
      timeout: 15_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe('invalid configuration: VISION_CHUNK_SECONDS: expected a number, got "abc"');
  });

  it.each(MAGIC_WORDS.map((w) => [w.why, w] as const))('MAGIC_WORD: %s', (_why, { word, valid }) => {
    if (valid) expect(loadConfig({ MAGIC_WORD: word }).magicWord).toBe(word);
    else expect(() => loadConfig({ MAGIC_WORD: word })).toThrow(new ConfigError(`invalid configuration: ${MAGIC_WORD_ERROR}`));
  });
});
