import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/adapters/logger.ts';
import { sessionMachine } from '../src/machines/session.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { FakeInference } from './fakes/inference.ts';
import { testConfig } from './helpers/config.ts';
import { frame, GlassesClient } from './helpers/ws-client.ts';

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** `name{labels} value` lines of a Prometheus text exposition, comments dropped. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!match) throw new Error(`not a sample line: ${line}`);
    out.set(match[1]!, Number(match[2]));
  }
  return out;
}

describe('GET /metrics (SPEC §3)', () => {
  it('is Prometheus text whose counters move as frames flow and captions come back', async () => {
    server = await startServer({
      config: testConfig({ VISION_CHUNK_SECONDS: '0.001', MAGIC_WORD: 'w' }),
      inference: new FakeInference({ auto: (_chunk, call) => (call === 1 ? { kind: 'timeout', message: 'slow' } : undefined) }),
      session: sessionMachine.provide({ delays: { errorBackoff: 1 } }),
    });
    const headers = { 'x-magic-word': 'w' };
    const before = samples(await (await fetch(`${server.url}/metrics`, { headers })).text());
    expect(before.get('foresight_frames_received_total')).toBe(0);
    expect(before.has('process_cpu_user_seconds_total')).toBe(true);

    const client = await GlassesClient.connect(server.url, { headers });
    await client.sendUntil((a) => a.inference_error !== undefined, 100);
    await client.sendUntil((a) => a.caption !== undefined, 100);
    const sent = client.acks.length;
    const res = await fetch(`${server.url}/metrics`, { headers });
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    const after = samples(await res.text());
    expect(after.get('foresight_frames_received_total')).toBe(sent);
    expect(after.get('foresight_frame_bytes_received_total')).toBe(sent * 100);
    expect(after.get('foresight_acks_sent_total')).toBe(sent);
    expect(after.get('foresight_sessions{inference="idle",acking="ready"}') ?? after.get('foresight_sessions{inference="inferring",acking="ready"}')).toBe(1);
    expect(after.get('foresight_inference_errors_total{kind="timeout"}')).toBe(1);
    expect(after.get('foresight_inference_latency_seconds_count')).toBeGreaterThanOrEqual(1);
    expect(after.get('foresight_chunk_frames_count')).toBeGreaterThanOrEqual(2);
    expect(after.get('foresight_poke_sends_total{outcome="sent"}')).toBe(0);
    expect(after.get('foresight_interventions_total{decision="yes"}')).toBe(0);
    await client.close();
  });

  it('needs the magic word', async () => {
    server = await startServer({ config: testConfig({ MAGIC_WORD: 'w' }) });
    expect((await fetch(`${server.url}/metrics`)).status).toBe(403);
    expect((await fetch(`${server.url}/debug/actors`)).status).toBe(403);
  });
});

describe('GET /debug/actors (SPEC §3)', () => {
  it('lists a connected session with its state and counters, and drops it after close', async () => {
    server = await startServer({ config: testConfig({ POKE_API_KEY: 'poke-secret', OPENAI_API_KEY: 'sk-secret' }) });
    const client = await GlassesClient.connect(server.url);
    for (let i = 0; i < 3; i++) client.send(frame(10));
    await client.untilAcks(3);
    const [id] = server.connections().keys();
    const res = await fetch(`${server.url}/debug/actors`);
    const text = await res.text();
    expect(text).not.toMatch(/poke-secret|sk-secret/);
    const tree = JSON.parse(text) as {
      supervisor: { state: unknown; sessionsOpened: number };
      pokeSender: { state: unknown; queued: number };
      interventionTicker: { state: unknown };
      sessions: Array<{ id: string; state: unknown; frames: number; degradedReason: string | null }>;
    };
    expect(tree.supervisor).toMatchObject({ sessionsOpened: 1 });
    expect(tree.pokeSender).toMatchObject({ queued: 0 });
    expect(tree.interventionTicker.state).toEqual({ running: { clock: 'waiting', work: 'idle' } });
    expect(tree.sessions).toEqual([
      expect.objectContaining({
        id,
        state: { active: { acking: 'ready', inference: 'degraded' } },
        frames: 3,
        degradedReason: 'no-credentials',
      }),
    ]);
    await client.close();
    await expect
      .poll(async () => ((await (await fetch(`${server!.url}/debug/actors`)).json()) as { sessions: unknown[] }).sessions)
      .toEqual([]);
  });
});

describe('observe routes under a scrape flood', () => {
  it('render /metrics and /debug/actors at most once per OBSERVE_CACHE_S; concurrent requests share one render', async () => {
    server = await startServer({ config: testConfig({ OBSERVE_CACHE_S: '60' }) });
    const scrape = async () => samples(await (await fetch(`${server!.url}/metrics`)).text()).get('foresight_frames_received_total');
    const tree = async () => ((await (await fetch(`${server!.url}/debug/actors`)).json()) as { sessions: unknown[] }).sessions.length;
    expect(await scrape()).toBe(0);
    expect(await tree()).toBe(0);
    const client = await GlassesClient.connect(server.url);
    for (let i = 0; i < 3; i++) client.send(frame(10));
    await client.untilAcks(3);
    // Inside the window, the first render is the answer.
    expect(await Promise.all([scrape(), scrape(), scrape()])).toEqual([0, 0, 0]);
    expect(await tree()).toBe(0);
    await client.close();
  });

  it('/debug/actors lists at most maxListedSessions sessions and counts them all', async () => {
    const config = testConfig();
    server = await startServer({ config: { ...config, observe: { cacheMs: 0, maxListedSessions: 2 } } });
    const clients = await Promise.all([0, 1, 2].map(() => GlassesClient.connect(server!.url)));
    await expect.poll(() => server!.connections().size).toBe(3);
    const body = (await (await fetch(`${server.url}/debug/actors`)).json()) as { sessionsOpen: number; sessions: Array<{ id: string }> };
    expect(body.sessionsOpen).toBe(3);
    expect(body.sessions.map((s) => s.id)).toEqual([...server.connections().keys()].slice(0, 2));
    await Promise.all(clients.map((c) => c.close()));
  });
});

describe('tick metrics', () => {
  it('observes every intervention tick in a duration histogram', async () => {
    server = await startServer({
      config: testConfig({ OPENAI_API_KEY: 'sk-test', INTERVENTION_TICK_SECONDS: '0.02' }),
      advisor: { decide: async () => ({ ok: false, error: { kind: 'api', message: 'unused' } }) },
    });
    await expect
      .poll(async () => samples(await (await fetch(`${server!.url}/metrics`)).text()).get('foresight_intervention_tick_seconds_count{outcome="skipped"}') ?? 0)
      .toBeGreaterThanOrEqual(2);
  });
});

describe('logs', () => {
  it('carry no secret, and end each session with a summary line', async () => {
    let text = '';
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        text += chunk.toString();
        done();
      },
    });
    const logger = createLogger('debug', sink);
    server = await startServer({
      config: testConfig({
        LOG_LEVEL: 'debug',
        MAGIC_WORD: 'magic-secret-1',
        POKE_API_KEY: 'poke-secret-2',
        POKE_API_URL: 'http://127.0.0.1:9/unreachable',
        OPENAI_API_KEY: 'sk-secret-3',
        MODAL_TOKEN_ID: 'ak-secret-4',
        MODAL_TOKEN_SECRET: 'as-secret-5',
      }),
      logger,
      poke: { policy: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 } },
    });
    const headers = { 'x-magic-word': 'magic-secret-1' };
    const client = await GlassesClient.connect(server.url, { headers });
    for (let i = 0; i < 5; i++) client.send(frame(10));
    await client.untilAcks(5);
    await client.close();
    const poke = await fetch(`${server.url}/poke/send`, {
      method: 'POST',
      headers: { ...headers, 'x-poke-api-key': 'poke-secret-6', 'content-type': 'application/json' },
      body: '{"message":"hi"}',
    });
    expect(poke.status).toBe(502);
    logger.info({ apiKey: 'sk-secret-7', headers: { authorization: 'Bearer sk-secret-8' } }, 'redaction check');
    await server.close();
    server = undefined;
    expect(text).toContain('"msg":"session closed"');
    expect(text).toMatch(/"frames":5,"fps":[\d.]+/);
    expect(text).toContain('"apiKey":"[redacted]"');
    expect(text).not.toMatch(/secret-\d/);
  });
});
