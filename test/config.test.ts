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
    [{ POKE_API_URL: 'not a url' }, 'invalid configuration: POKE_API_URL: expected an absolute URL'],
    [{ MODAL_TOKEN_ID: 'ak-1' }, 'invalid configuration: MODAL_TOKEN_SECRET: required when its pair is set'],
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
