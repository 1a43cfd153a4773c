import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { startServer, type RunningServer } from '../src/server.ts';
import { testConfig } from './helpers/config.ts';
import { GlassesClient } from './helpers/ws-client.ts';

let server: RunningServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(env: Record<string, string> = {}) {
  server = await startServer({ config: testConfig(env) });
  return server;
}

/** Opens a WebSocket and reports the HTTP status the upgrade was refused with, or 101. */
function upgradeStatus(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => {
      ws.close();
      resolve({ status: 101, body: '' });
    });
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (chunk: Buffer) => (body += chunk.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    ws.once('error', reject);
  });
}

describe('HTTP (SPEC §3)', () => {
  it('answers /health', async () => {
    const { url } = await start();
    const res = await fetch(`${url}/health`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/application\/json/);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('answers unknown paths with a JSON 404', async () => {
    const { url } = await start();
    const res = await fetch(`${url}/nope`);
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ detail: 'not found' });
  });

  it('refuses WebSocket upgrades on other paths with 404', async () => {
    const { url } = await start();
    expect(await upgradeStatus(`${url.replace('http', 'ws')}/elsewhere`)).toEqual({
      status: 404,
      body: '{"detail":"not found"}',
    });
  });
});

describe('magic word (SPEC §3)', () => {
  const env = { MAGIC_WORD: 'open-sesame' };

  it('keeps /health public', async () => {
    const { url } = await start(env);
    expect((await fetch(`${url}/health`)).status).toBe(200);
  });

  it.each([
    ['no word', {}, ''],
    ['a wrong header', { 'x-magic-word': 'open sesam' }, ''],
    ['a wrong query', {}, '?magic_word=nope'],
    ['an empty header', { 'x-magic-word': '' }, ''],
  ])('answers 403 for %s', async (_name, headers: Record<string, string>, query) => {
    const { url } = await start(env);
    const res = await fetch(`${url}/anything${query}`, { headers });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ detail: 'forbidden' });
  });

  it('lets the header or the query through', async () => {
    const { url } = await start(env);
    expect((await fetch(`${url}/anything`, { headers: { 'x-magic-word': 'open-sesame' } })).status).toBe(404);
    expect((await fetch(`${url}/anything?magic_word=open-sesame`)).status).toBe(404);
  });

  it('refuses the WebSocket upgrade with 403 before upgrading', async () => {
    const { url } = await start(env);
    const ws = `${url.replace('http', 'ws')}/vision/stream`;
    expect(await upgradeStatus(ws)).toEqual({ status: 403, body: '{"detail":"forbidden"}' });
    expect(await upgradeStatus(ws, { 'x-magic-word': 'wrong' })).toMatchObject({ status: 403 });
    expect(await upgradeStatus(`${ws}?magic_word=wrong`)).toMatchObject({ status: 403 });
    expect(server!.connections().size).toBe(0);
  });

  it('upgrades with the word in the header or the query', async () => {
    const { url } = await start(env);
    const ws = `${url.replace('http', 'ws')}/vision/stream`;
    expect(await upgradeStatus(ws, { 'x-magic-word': 'open-sesame' })).toMatchObject({ status: 101 });
    expect(await upgradeStatus(`${ws}?magic_word=open-sesame`)).toMatchObject({ status: 101 });
  });

  it('warns once at start when no magic word is set', async () => {
    const lines: string[] = [];
    const logger = {
      debug: () => undefined,
      info: () => undefined,
      warn: (_o: object, msg?: string) => lines.push(msg ?? ''),
      error: () => undefined,
      child() {
        return logger;
      },
    };
    server = await startServer({ config: testConfig(), logger });
    const client = await GlassesClient.connect(server.url);
    await client.close();
    expect(lines.filter((l) => l.includes('MAGIC_WORD'))).toHaveLength(1);
  });
});

describe('supervisor children (SPEC §6)', () => {
  const tickerState = (s: RunningServer) => s.supervisor.system.get('interventionTicker')?.getSnapshot().value;

  it('keeps the intervention ticker disabled without OPENAI_API_KEY', async () => {
    const s = await start();
    expect(tickerState(s)).toBe('disabled');
  });

  it('runs the ticker with a key, unless INTERVENTION_TICK is off', async () => {
    const on = await start({ OPENAI_API_KEY: 'sk-test' });
    expect(tickerState(on)).toEqual({ running: { clock: 'waiting', work: 'idle' } });
    await on.close();
    server = await startServer({ config: testConfig({ OPENAI_API_KEY: 'sk-test', INTERVENTION_TICK: 'off' }) });
    expect(tickerState(server)).toBe('disabled');
  });
});
