import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/adapters/logger.ts';
import { openSqliteStore } from '../../src/adapters/sqlite-store.ts';
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
    await post(`${url}/biometrics/upload`, JSON.stringify({ ...biometric, riskPrediction: { stress: 0.3 }, steps: 12 }));
    const { biometrics } = await store.windowsSince(0);
    expect(biometrics[0]).toMatchObject({ qualityScore: 0.8, riskPrediction: { stress: 0.3 }, features: { hrMean: 71.5, steps: 12 } });
  });

  it('accepts a body sent without a JSON content type', async () => {
    const { url } = await start();
    const res = await fetch(`${url}/captions/upload`, { method: 'POST', body: JSON.stringify(caption) });
    expect(res.status).toBe(200);
  });

  it('answers 503, not 500, when the store fails, and logs why', async () => {
    const store = openSqliteStore({ path: ':memory:' });
    store.close(); // every statement now throws
    const lines: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) });
    const logger = createLogger('error', sink);
    server = await startServer({ config: testConfig(), store, logger });
    const res = await post(`${server.url}/biometrics/upload`, JSON.stringify(biometric));
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ success: false, error: 'storage unavailable' });
    expect(lines.map((l) => JSON.parse(l).msg)).toContain('upload not stored');
  });

  it('needs the magic word when one is set', async () => {
    const { url } = await start({ MAGIC_WORD: 'w' });
    expect((await post(`${url}/captions/upload`, JSON.stringify(caption))).status).toBe(403);
    expect((await post(`${url}/captions/upload`, JSON.stringify(caption), { 'x-magic-word': 'w' })).status).toBe(200);
  });
});
