import { afterEach, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../src/adapters/sqlite-store.ts';
import { MAX_UPLOAD_BYTES } from '../../src/schemas/uploads.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfig } from '../helpers/config.ts';

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(env: Record<string, string> = {}) {
  const store = openSqliteStore({ path: ':memory:', now: () => 1_700_000_000_000 });
  server = await startServer({ config: testConfig(env), store });
  return { url: server.url, store };
}

const post = (url: string, body: string, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

const biometric = { windowId: 'bio-1', timestamp: 1_700_000_000_000, durationMs: 60_000, qualityScore: 0.8, hrMean: 71.5 };
const caption = { windowId: 'cap-1', timestamp: 1_700_000_000_000, chunkStartS: 1.5, chunkEndS: 2.5, caption: 'a kitchen', latencyMs: 420, tokensGenerated: 9 };

describe('POST /biometrics/upload and /captions/upload (SPEC §3, §8)', () => {
  it.each([
    ['/biometrics/upload', biometric],
    ['/captions/upload', caption],
  ])('%s stores a valid window and answers with its id and time', async (path, body) => {
    const { url } = await start();
    const res = await post(`${url}${path}`, JSON.stringify(body));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ success: true, windowId: body.windowId, storedAt: 1_700_000_000_000 });
  });

  it('stores a duplicate window id once and still answers 200', async () => {
    const { url, store } = await start();
    expect((await post(`${url}/captions/upload`, JSON.stringify(caption))).status).toBe(200);
    const again = await post(`${url}/captions/upload`, JSON.stringify({ ...caption, caption: 'other' }));
    expect(again.status).toBe(200);
    expect(await again.json()).toMatchObject({ success: true, windowId: 'cap-1' });
    const { captions } = await store.windowsSince(0);
    expect(captions.map((c) => c.caption)).toEqual(['a kitchen']);
  });

  it('keeps extra biometric fields as features', async () => {
    const { url, store } = await start();
    await post(`${url}/biometrics/upload`, JSON.stringify({ ...biometric, riskPrediction: 0.3, steps: 12 }));
    const { biometrics } = await store.windowsSince(0);
    expect(biometrics[0]).toMatchObject({ qualityScore: 0.8, riskPrediction: 0.3, features: { hrMean: 71.5, steps: 12 } });
  });

  it('accepts a body sent without a JSON content type', async () => {
    const { url } = await start();
    const res = await fetch(`${url}/captions/upload`, { method: 'POST', body: JSON.stringify(caption) });
    expect(res.status).toBe(200);
  });

  it.each([
    ['/captions/upload', '{"windowId":', 'body: invalid JSON'],
    ['/biometrics/upload', 'not json', 'body: invalid JSON'],
    ['/captions/upload', '', 'windowId: Invalid input: expected string, received undefined'],
    ['/captions/upload', '[1,2]', 'body: Invalid input: expected object, received array'],
    ['/captions/upload', JSON.stringify({ ...caption, windowId: undefined }), 'windowId: Invalid input: expected string, received undefined'],
    ['/biometrics/upload', JSON.stringify({ ...biometric, windowId: undefined }), 'windowId: Invalid input: expected string, received undefined'],
    ['/biometrics/upload', JSON.stringify({ ...biometric, windowId: '  ' }), 'windowId: Too small: expected string to have >=1 characters'],
    ['/biometrics/upload', JSON.stringify({ ...biometric, timestamp: 'yesterday' }), 'timestamp: Invalid input: expected number, received string'],
    ['/biometrics/upload', JSON.stringify({ ...biometric, durationMs: 0 }), 'durationMs: Too small: expected number to be >0'],
    ['/biometrics/upload', JSON.stringify({ ...biometric, qualityScore: 2 }), 'qualityScore: Too big: expected number to be <=1'],
    ['/biometrics/upload', JSON.stringify({ ...biometric, hrMean: { nested: true } }), 'hrMean: Invalid input'],
    ['/captions/upload', JSON.stringify({ ...caption, caption: 42 }), 'caption: Invalid input: expected string, received number'],
    ['/captions/upload', JSON.stringify({ ...caption, chunkStartS: -1 }), 'chunkStartS: Too small: expected number to be >=0'],
    ['/captions/upload', JSON.stringify({ ...caption, chunkEndS: 1 }), 'chunkEndS: must not be before chunkStartS'],
    ['/captions/upload', JSON.stringify({ ...caption, latencyMs: 1.5 }), 'latencyMs: Invalid input: expected int, received number'],
  ])('%s answers 400 for %s', async (path, body, error) => {
    const { url } = await start();
    const res = await post(`${url}${path}`, body);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ success: false, error });
  });

  it('answers 400 for an oversized body', async () => {
    const { url } = await start();
    const res = await post(`${url}/captions/upload`, JSON.stringify({ ...caption, caption: 'x'.repeat(MAX_UPLOAD_BYTES) }));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ success: false, error: `body: larger than ${MAX_UPLOAD_BYTES} bytes` });
  });

  it('needs the magic word when one is set', async () => {
    const { url } = await start({ MAGIC_WORD: 'w' });
    expect((await post(`${url}/captions/upload`, JSON.stringify(caption))).status).toBe(403);
    expect((await post(`${url}/captions/upload`, JSON.stringify(caption), { 'x-magic-word': 'w' })).status).toBe(200);
  });
});
