import type { ServerResponse } from 'node:http';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { syntheticJpegFrames } from '../scripts/synthetic-frames.ts';
import { replay } from '../scripts/replay.ts';
import { createLogger } from '../src/adapters/logger.ts';
import { cutText } from '../src/adapters/inference.ts';
import { firstSentence, sniffImageType } from '../src/adapters/openai-vision.ts';
import { sessionMachine } from '../src/machines/session.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { ChildServer } from './helpers/child-server.ts';
import { FakeModalControlPlane } from './fakes/modal-control-plane.ts';
import { FakeOpenAICompatible, completion, json } from './fakes/openai-compatible.ts';
import { testConfig } from './helpers/config.ts';
import { GlassesClient, type Ack } from './helpers/ws-client.ts';

// The vision provider over the real `openai` SDK against a loopback
// OpenAI-compatible server (FakeOpenAICompatible), through the glasses socket.

const KEY = 'sk-test-vision-key-0123456789';
const FRAMES = syntheticJpegFrames(24, { width: 32, height: 24 });

let server: RunningServer | undefined;
let child: ChildServer | undefined;
const fakes: FakeOpenAICompatible[] = [];
const clients: GlassesClient[] = [];
let logText = '';

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => (c.closeCode === undefined ? c.close() : c.closed)));
  await server?.close();
  await child?.stop();
  server = undefined;
  child = undefined;
  for (const fake of fakes.splice(0)) await fake.stop();
  logText = '';
});

async function fakeOpenAI(): Promise<{ fake: FakeOpenAICompatible; baseUrl: string }> {
  const fake = new FakeOpenAICompatible();
  fakes.push(fake);
  return { fake, baseUrl: `${await fake.start()}/v1` };
}

/** A server on the given env, logging at debug into `logText`; retries after a failure come at once. */
async function start(env: Record<string, string>, deps: Partial<Parameters<typeof startServer>[0]> = {}) {
  const logger = createLogger('debug', new Writable({ write: (chunk: Buffer, _enc, done) => ((logText += chunk.toString()), done()) }), {
    rateLimit: { lines: 0, windowMs: 1 },
  });
  server = await startServer({
    config: testConfig({ VISION_CHUNK_SECONDS: '0.05', LOG_LEVEL: 'debug', ...env }),
    session: sessionMachine.provide({ delays: { errorBackoff: 1 } }),
    logger,
    ...deps,
  });
  return server;
}

async function connect(headers?: Record<string, string>): Promise<GlassesClient> {
  const client = await GlassesClient.connect(server!.url, headers ? { headers } : {});
  clients.push(client);
  return client;
}

/** JPEG frames at a camera's pace until `predicate` holds over the acks. */
async function stream(client: GlassesClient, predicate: (acks: Ack[]) => boolean): Promise<void> {
  let n = 0;
  const camera = setInterval(() => client.send(FRAMES[n++ % FRAMES.length]!), 10);
  try {
    await client.until(() => predicate(client.acks), 'stream condition');
  } finally {
    clearInterval(camera);
  }
}

const captionAck = (acks: Ack[]) => acks.find((a) => a.caption !== undefined);
const errorAcks = (acks: Ack[]) => acks.filter((a) => a.inference_error !== undefined);

interface TreeSession {
  id: string;
  provider: string;
  degradedReason: string | null;
  state: unknown;
}
const sessions = async () => ((await (await fetch(`${server!.url}/debug/actors`)).json()) as { sessions: TreeSession[] }).sessions;

describe('captions from an OpenAI-compatible server (VISION_PROVIDER=openai)', () => {
  it('rides on acks with window_id; the request holds the chunk as JPEG parts, the prompt, the times, the model and max_tokens', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    await start({
      VISION_PROVIDER: 'openai',
      VISION_OPENAI_BASE_URL: baseUrl,
      VISION_OPENAI_API_KEY: KEY,
      VISION_OPENAI_MODEL: 'gpt-4.1-nano',
      VISION_OPENAI_MAX_TOKENS: '40',
    });
    const client = await connect();
    await stream(client, (acks) => acks.filter((a) => a.caption !== undefined).length >= 2);
    const [sessionId] = server!.connections().keys();
    expect(captionAck(client.acks)).toMatchObject({
      caption: 'A person walks past a yellow square.',
      window_id: expect.stringMatching(new RegExp(`^${sessionId}-\\d+$`)),
      tokens_generated: 11,
      latency_ms: expect.any(Number),
    });

    const [request] = fake.visionRequests();
    expect(request).toMatchObject({ authorization: `Bearer ${KEY}`, model: 'gpt-4.1-nano', maxTokens: 40 });
    expect(request!.text).toContain(testConfig().vision.prompt);
    expect(request!.text).toMatch(/\d+\.\d s to \d+\.\d s into the stream\.$/);
    // The next chunk carries the session's history.
    expect(fake.visionRequests()[1]!.text).toMatch(
      /into the stream\.\nEarlier captions of this wearer's view, oldest first \(do not repeat them word for word\):\n- A person walks past a yellow square\.$/,
    );
    expect(request!.images.length).toBeGreaterThanOrEqual(1);
    expect(request!.images.length).toBeLessThanOrEqual(6);
    const sent = new Set(FRAMES.map((f) => Buffer.from(f).toString('base64')));
    for (const image of request!.images) {
      expect(image.detail).toBe('low');
      expect(image.url.startsWith('data:image/jpeg;base64,')).toBe(true);
      expect(sent.has(image.url.slice('data:image/jpeg;base64,'.length))).toBe(true);
    }
    expect(await sessions()).toEqual([expect.objectContaining({ id: sessionId, provider: 'openai', degradedReason: null })]);
    expect(logText).toContain('"msg":"vision provider"');
    expect(logText).toContain('"provider":"openai"');
  });

  it('needs no key for a local server: VISION_OPENAI_BASE_URL alone picks the provider, and no Authorization header is sent', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    await start({ VISION_OPENAI_BASE_URL: baseUrl, VISION_OPENAI_MODEL: 'gemma3:4b' });
    const client = await connect();
    await stream(client, (acks) => captionAck(acks) !== undefined);
    const [request] = fake.visionRequests();
    expect(request).toMatchObject({ model: 'gemma3:4b', authorization: undefined });
    expect(logText).toContain('"key":"none"');
  });

  it("never sends the tick's OPENAI_API_KEY to a server other than the tick's", async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    await start({ VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: baseUrl, OPENAI_API_KEY: KEY });
    const client = await connect();
    await stream(client, (acks) => captionAck(acks) !== undefined);
    expect(fake.visionRequests()[0]!.authorization).toBeUndefined();
  });

  it('a refused key (401) degrades the session at once, with a reason that names no part of the key', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    fake.vision = (_req, res) =>
      json(res, 401, { error: { message: `Incorrect API key provided: ${KEY}. You can find your API key at …`, type: 'invalid_request_error', code: 'invalid_api_key' } });
    await start({ VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: baseUrl, VISION_OPENAI_API_KEY: KEY, INSPECT: '1', INSPECT_PORT: '0' });
    const events: string[] = [];
    const viewer = new WebSocket(`${server!.inspectorUrl!.replace(/^http/, 'ws')}/`);
    viewer.on('message', (data) => events.push(String(data)));
    await new Promise((resolve, reject) => viewer.once('open', resolve).once('error', reject));
    const client = await connect();
    await stream(client, (acks) => errorAcks(acks).length > 0);
    expect(errorAcks(client.acks)[0]!.inference_error).toBe('model unavailable');
    await expect.poll(async () => (await sessions())[0]?.degradedReason).toBe('open-failed: the vision API refused the key (401)');
    expect(fake.visionRequests()).toHaveLength(1);

    // The key is nowhere a person or a stranger could read it.
    const metrics = await (await fetch(`${server!.url}/metrics`)).text();
    const tree = await (await fetch(`${server!.url}/debug/actors`)).text();
    await expect.poll(() => events.some((e) => e.includes('refused the key'))).toBe(true);
    viewer.close();
    for (const text of [logText, metrics, tree, events.join('\n'), JSON.stringify(client.messages)]) {
      expect(text).not.toContain(KEY);
      expect(text).not.toContain('sk-test');
    }
  });

  it('429 and 500 count towards the circuit, which opens after VISION_MAX_INFERENCE_FAILURES', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    const statuses = [429, 500, 503];
    fake.vision = (_req, res) => json(res, statuses.shift() ?? 500, { error: { message: 'busy', type: 'server_error' } });
    await start({ VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: baseUrl, VISION_OPENAI_API_KEY: KEY });
    const client = await connect();
    await stream(client, (acks) => errorAcks(acks).length >= 3);
    await expect.poll(async () => (await sessions())[0]?.degradedReason).toBe('circuit-open');
    expect(errorAcks(client.acks).map((a) => a.inference_error)).toEqual(['inference failed', 'inference failed', 'inference failed']);
    expect(fake.visionRequests()).toHaveLength(3);
    for (const status of [429, 500, 503]) expect(logText).toContain(`"detail":"the vision API answered ${status}: busy"`);
  });

  it('a server that never answers times out after VISION_INFERENCE_TIMEOUT_MS', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    const held: ServerResponse[] = [];
    fake.vision = (_req, res) => held.push(res);
    await start({ VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: baseUrl, VISION_OPENAI_API_KEY: KEY, VISION_INFERENCE_TIMEOUT_MS: '300' });
    const client = await connect();
    const started = performance.now();
    await stream(client, (acks) => errorAcks(acks).length > 0);
    expect(performance.now() - started).toBeGreaterThanOrEqual(300);
    expect(errorAcks(client.acks)[0]!.inference_error).toBe('inference timed out');
    const metrics = await (await fetch(`${server!.url}/metrics`)).text();
    expect(metrics).toContain('foresight_inference_errors_total{kind="timeout"} 1');
  });

  it('an empty or refused answer is invalid output; a chunk with no JPEG, PNG or WebP frame is never sent', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    const answers = [completion('   '), completion(null, { refusal: 'I cannot help with that.' })];
    fake.vision = (_req, res) => json(res, 200, answers.shift() ?? completion('Fine.'));
    await start({ VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: baseUrl, VISION_OPENAI_API_KEY: KEY });
    const client = await connect();
    await stream(client, (acks) => errorAcks(acks).length >= 2);
    expect(errorAcks(client.acks).map((a) => a.inference_error)).toEqual(['invalid inference output', 'invalid inference output']);
    expect(logText).toContain('"detail":"the model gave no caption"');
    expect(logText).toContain('"detail":"the model refused to caption the chunk"');

    await client.close();
    await expect.poll(() => server!.connections().size).toBe(0);
    const before = fake.visionRequests().length;
    const other = await connect();
    const camera = setInterval(() => other.send(Buffer.from('not an image at all')), 10);
    await other.until(() => other.acks.some((a) => a.inference_error !== undefined), 'an inference error').finally(() => clearInterval(camera));
    expect(errorAcks(other.acks)[0]!.inference_error).toBe('invalid inference output');
    expect(logText).toContain('"detail":"no frame of the chunk is a JPEG, PNG or WebP image"');
    expect(fake.visionRequests()).toHaveLength(before);
  });
});

describe('a broken or hostile OpenAI-compatible server', () => {
  it('an answer over 1 MiB, a null, empty, 204 or cut-off body are invalid output, read no further than the limit', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    const raw = (status: number, body: string) => (res: ServerResponse) => {
      res.writeHead(status, status === 204 ? {} : { 'content-type': 'application/json' }).end(status === 204 ? undefined : body);
    };
    const big = JSON.stringify(completion(`A ${'very '.repeat(300_000)}big room.`));
    const answers = [raw(200, big), raw(200, 'null'), raw(200, ''), raw(204, ''), raw(200, '{"choices":[{"mess')];
    fake.vision = (_req, res) => (answers.shift() ?? ((r: ServerResponse) => json(r, 200, completion('Fine.'))))(res);
    await start({ VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: baseUrl, VISION_OPENAI_API_KEY: KEY, VISION_MAX_INFERENCE_FAILURES: '100' });
    const client = await connect();
    await stream(client, (acks) => captionAck(acks) !== undefined);
    expect(errorAcks(client.acks).map((a) => a.inference_error)).toEqual(Array(5).fill('invalid inference output'));
    const details = logText
      .split('\n')
      .filter((l) => l.includes('"inference failed"'))
      .map((l) => (JSON.parse(l) as { detail: string }).detail);
    expect(details).toEqual([
      "the vision API's answer is longer than 1048576 bytes",
      'the model gave no caption',
      'the model gave no caption',
      'the model gave no caption',
      "the vision API's answer is not JSON",
    ]);
    expect(big.length).toBeGreaterThan(1_500_000);
  });

  it('a redirect is not followed, headers from OPENAI_CUSTOM_HEADERS are not sent, and control characters never reach a caption', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    const { fake: elsewhere, baseUrl: elsewhereUrl } = await fakeOpenAI();
    let redirected = false;
    fake.vision = (_req, res) => {
      if (!redirected) {
        redirected = true;
        res.writeHead(307, { location: `${elsewhereUrl}/chat/completions` }).end();
        return;
      }
      json(res, 200, completion('\u001b[31mA red\u0000 door\u202e opens\ud800. Then more.'));
    };
    const saved = process.env.OPENAI_CUSTOM_HEADERS;
    process.env.OPENAI_CUSTOM_HEADERS = 'X-Tick-Org: org-secret-tick';
    try {
      await start({ VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: baseUrl, VISION_MAX_INFERENCE_FAILURES: '100' });
    } finally {
      if (saved === undefined) delete process.env.OPENAI_CUSTOM_HEADERS;
      else process.env.OPENAI_CUSTOM_HEADERS = saved;
    }
    const client = await connect();
    await stream(client, (acks) => captionAck(acks) !== undefined);
    expect(elsewhere.http.received).toHaveLength(0);
    expect(errorAcks(client.acks)[0]!.inference_error).toBe('inference failed');
    expect(logText).toContain('"detail":"vision API unreachable: ');
    expect(fake.http.received.every((r) => r.headers['x-tick-org'] === undefined)).toBe(true);
    expect(captionAck(client.acks)!.caption).toBe('[31mA red door opens\ufffd.');
  });
});

describe('which provider captions a connection', () => {
  it('VISION_PROVIDER=auto with nothing set: as before, acks and a session degraded no-credentials', async () => {
    await start({});
    const client = await connect();
    await stream(client, (acks) => acks.length >= 3);
    await expect.poll(async () => (await sessions())[0]).toMatchObject({ provider: 'modal', degradedReason: 'no-credentials' });
    expect(client.acks.every((a) => a.caption === undefined)).toBe(true);
  });

  it('OPENAI_API_KEY alone (set for the tick) never sends a frame anywhere', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    await start({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: baseUrl });
    const client = await connect();
    await stream(client, (acks) => acks.length >= 10);
    await expect.poll(async () => (await sessions())[0]?.degradedReason).toBe('no-credentials');
    expect(fake.visionRequests()).toHaveLength(0);
  });

  it('VISION_PROVIDER=none sends nothing even with an endpoint set', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    await start({ VISION_PROVIDER: 'none', VISION_OPENAI_BASE_URL: baseUrl });
    const client = await connect();
    await stream(client, (acks) => acks.length >= 10);
    await expect.poll(async () => (await sessions())[0]).toMatchObject({ provider: 'none', degradedReason: 'no-credentials' });
    expect(fake.visionRequests()).toHaveLength(0);
  });

  it("a connection's own Modal token pair wins over the server's provider, for that connection only", async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    const modal = new FakeModalControlPlane();
    await start({ VISION_PROVIDER: 'openai', VISION_OPENAI_BASE_URL: baseUrl }, { modalClient: { grpcMiddleware: [modal.middleware] } });
    const own = await connect({ 'x-modal-token-id': 'ak-own', 'x-modal-token-secret': 'as-own' });
    await stream(own, (acks) => captionAck(acks) !== undefined);
    expect(captionAck(own.acks)!.caption).toMatch(/^A person looks at \d+ frames\.$/);
    expect(fake.visionRequests()).toHaveLength(0);
    const plain = await connect();
    await stream(plain, (acks) => captionAck(acks) !== undefined);
    expect(captionAck(plain.acks)!.caption).toBe('A person walks past a yellow square.');
    expect((await sessions()).map((s) => s.provider).sort()).toEqual(['modal', 'openai']);
  });
});

describe('the whole loop with one key (npm start)', () => {
  it('captions a JPEG stream through the OpenAI-compatible server, and the tick then reads those captions', async () => {
    const { fake, baseUrl } = await fakeOpenAI();
    child = await ChildServer.start({
      VISION_PROVIDER: 'openai',
      VISION_OPENAI_BASE_URL: baseUrl,
      OPENAI_API_KEY: 'k',
      OPENAI_BASE_URL: baseUrl,
      VISION_CHUNK_SECONDS: '0.1',
      INTERVENTION_TICK_SECONDS: '0.5',
    });
    const lines: string[] = [];
    const summary = await replay({ url: child.url, fps: 60, frames: FRAMES, write: (l) => lines.push(l) });
    expect(summary.captions).toBeGreaterThan(0);
    expect(lines.some((l) => l.endsWith('A person walks past a yellow square.'))).toBe(true);
    expect(fake.visionRequests()[0]!.authorization).toBe('Bearer k');
    await expect.poll(() => fake.tickRequests().some((r) => JSON.stringify(r.body).includes('A person walks past a yellow square.')), { timeout: 10_000 }).toBe(true);
  });
});

describe('answer and frame helpers', () => {
  it.each([
    ['A desk with a laptop. Then more.', 'A desk with a laptop.'],
    ['  A busy\n street!  Cars pass.', 'A busy street!'],
    ['No stop at the end', 'No stop at the end'],
    ['Version 2.5 of a sign is shown.', 'Version 2.5 of a sign is shown.'],
    ['', ''],
    ['x'.repeat(400), `${'x'.repeat(299)}…`],
    ['\u001b[2J\u001b]0;title\u0007Hi\u0000 there.', '[2J ]0;title Hi there.'],
    ['A\u2028B\u0085C \u202eevil\u2066. Next.', 'A B C evil.'],
    ['Le\u202f« chat »\u00a0dort 👨‍👩‍👧 ici. Puis.', 'Le\u202f« chat »\u00a0dort 👨‍👩‍👧 ici.'],
    [`${'a'.repeat(298)}😀😀 more`, `${'a'.repeat(298)}…`],
    ['Lone \udc00 half.', 'Lone \ufffd half.'],
  ])('firstSentence(%j) is %j', (text, sentence) => {
    expect(firstSentence(text)).toBe(sentence);
    expect(firstSentence(text).isWellFormed()).toBe(true);
  });

  it.each([
    ['abc', 5, 'abc'],
    ['abcdef', 3, 'abc'],
    ['ab😀', 3, 'ab'],
    ['ab😀', 4, 'ab😀'],
    ['a😀b', 2, 'a'],
  ])('cutText(%j, %d) is %j: never half a surrogate pair', (text, max, cut) => {
    expect(cutText(text, max)).toBe(cut);
  });

  it.each([
    [[0xff, 0xd8, 0xff, 0xe0], 'image/jpeg'],
    [[0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'image/png'],
    [[...Buffer.from('RIFF'), 0, 0, 0, 0, ...Buffer.from('WEBP')], 'image/webp'],
    [[...Buffer.from('RIFF'), 0, 0, 0, 0, ...Buffer.from('WAVE')], undefined],
    [[0xff, 0xd8], undefined],
    [[], undefined],
  ])('sniffImageType(%j) is %s', (bytes, type) => {
    expect(sniffImageType(new Uint8Array(bytes))).toBe(type);
  });
});
