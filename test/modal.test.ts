import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/adapters/logger.ts';
import { createModalInference, modalTargetFromHeaders, type ModalInference } from '../src/adapters/modal.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { FakeModalControlPlane, RemoteException, type ChunkCall } from './fakes/modal-control-plane.ts';
import { testConfig } from './helpers/config.ts';
import { closedPort } from './helpers/ports.ts';
import { frame, GlassesClient, type Ack } from './helpers/ws-client.ts';

// The real Modal JS SDK throughout: either against a closed loopback port (a
// Modal that cannot be reached) or with its gRPC calls answered by
// FakeModalControlPlane through the SDK's `grpcMiddleware` hook (see there).

const ENV_PAIR = { MODAL_TOKEN_ID: 'ak-envtoken', MODAL_TOKEN_SECRET: 'as-envsecret' };
/** Chunks are due at once, so a frame or two start an inference. */
const FAST = { VISION_CHUNK_SECONDS: '0.001', ...ENV_PAIR };

let server: RunningServer | undefined;
let modal: ModalInference | undefined;
const clients: GlassesClient[] = [];
/** The server's log lines: where the model's own error messages go (clients read a stable text). */
let logLines: string[] = [];
const logger = () =>
  createLogger('warn', new Writable({ write: (chunk: Buffer, _enc, done) => (logLines.push(chunk.toString()), done()) }), {
    rateLimit: { lines: 0, windowMs: 1 },
  });
/** The model's messages of the inference errors the server logged, oldest first. */
const details = () =>
  logLines.map((l) => JSON.parse(l) as { msg: string; detail?: string }).filter((l) => l.msg === 'inference failed').map((l) => l.detail);

afterEach(async () => {
  logLines = [];
  await Promise.all(clients.splice(0).map((c) => (c.closeCode === undefined ? c.close() : c.closed)));
  await server?.close();
  modal?.close();
  server = undefined;
  modal = undefined;
});

/** A server whose inference is the Modal adapter over the real SDK, answered by `fake`. */
async function startWithFake(fake: FakeModalControlPlane, env: Record<string, string> = {}) {
  const config = testConfig({ ...FAST, ...env });
  modal = createModalInference({
    credentials: { tokenId: config.modal.tokenId!, tokenSecret: config.modal.tokenSecret! },
    appName: config.modal.appName,
    className: config.modal.className,
    timeoutMs: config.vision.inferenceTimeoutMs,
    client: { grpcMiddleware: [fake.middleware] },
  });
  server = await startServer({ config, inference: modal, logger: logger() });
  return server;
}

async function connect(headers?: Record<string, string>) {
  const client = await GlassesClient.connect(server!.url, headers ? { headers } : {});
  clients.push(client);
  return client;
}

/** Frames at a camera's pace until `predicate` holds over the acks. */
async function stream(client: GlassesClient, predicate: (acks: Ack[]) => boolean, bytes = 64): Promise<void> {
  let n = 0;
  const camera = setInterval(() => client.send(frame(bytes, n++ & 0xff)), 10);
  try {
    await client.until(() => predicate(client.acks), 'stream condition');
  } finally {
    clearInterval(camera);
  }
}

const errors = (acks: Ack[]) => acks.filter((a) => 'inference_error' in a);
const captions = (acks: Ack[]) => acks.filter((a) => 'caption' in a);
const inOrder = (acks: Ack[]) => acks.every((a, i) => a.frame === i + 1);
const onlySession = () => {
  const [id] = server!.connections().keys();
  return server!.session(id!)!;
};

describe('Modal credentials from upgrade headers (SPEC §7)', () => {
  it('takes a full pair, with app and class names', () => {
    expect(
      modalTargetFromHeaders({
        'x-modal-token-id': 'ak-1',
        'x-modal-token-secret': 'as-1',
        'x-modal-app-name': 'my-app',
        'x-modal-class-name': 'MyVLM',
      }),
    ).toEqual({ target: { tokenId: 'ak-1', tokenSecret: 'as-1', appName: 'my-app', className: 'MyVLM' } });
    expect(modalTargetFromHeaders({ 'x-modal-token-id': 'ak-1', 'x-modal-token-secret': 'as-1' })).toEqual({
      target: { tokenId: 'ak-1', tokenSecret: 'as-1' },
    });
  });

  it('ignores half a pair, naming the headers but never their values', () => {
    const half = modalTargetFromHeaders({ 'x-modal-token-id': 'ak-1', 'x-modal-app-name': 'my-app' });
    expect(half).toEqual({ ignored: 'x-modal-token-id, x-modal-app-name ignored: sent with half a token pair' });
    expect(modalTargetFromHeaders({ 'x-modal-token-secret': 'as-1' }).target).toBeUndefined();
  });

  it('ignores app and class headers without a pair', () => {
    expect(modalTargetFromHeaders({ 'x-modal-app-name': 'my-app', 'x-modal-class-name': 'MyVLM' })).toEqual({
      ignored: 'x-modal-app-name, x-modal-class-name ignored: sent without a token pair',
    });
  });

  it('ignores empty and repeated header values', () => {
    expect(modalTargetFromHeaders({ 'x-modal-token-id': '  ', 'x-modal-token-secret': 'as-1' }).target).toBeUndefined();
    expect(modalTargetFromHeaders({ 'x-modal-token-id': ['a', 'b'], 'x-modal-token-secret': 'as-1' }).target).toBeUndefined();
    expect(modalTargetFromHeaders({})).toEqual({});
  });
});

describe('Modal adapter without credentials', () => {
  it('runs the session as a degraded no-op: acks only, no error on any ack', async () => {
    server = await startServer({ config: testConfig({ VISION_CHUNK_SECONDS: '0.001' }) });
    const client = await connect();
    for (let i = 0; i < 30; i++) client.send(frame(100));
    await client.untilAcks(30);
    expect(client.acks.every((a) => Object.keys(a).length === 2)).toBe(true);
    expect(inOrder(client.acks)).toBe(true);
    expect(onlySession().getSnapshot().context.degradedReason).toBe('no-credentials');
  });

  it('app and class headers alone do not give a session credentials', async () => {
    server = await startServer({ config: testConfig({ VISION_CHUNK_SECONDS: '0.001' }) });
    const client = await connect({ 'x-modal-app-name': 'other-app', 'x-modal-class-name': 'Other' });
    client.send(frame(10));
    await client.untilAcks(1);
    expect(onlySession().getSnapshot().context.degradedReason).toBe('no-credentials');
  });
});

describe('Modal adapter with an unreachable Modal (MODAL_SERVER_URL on a closed port)', () => {
  const saved = process.env.MODAL_SERVER_URL;
  beforeAll(async () => {
    const port = await closedPort();
    process.env.MODAL_SERVER_URL = `http://127.0.0.1:${port}`;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.MODAL_SERVER_URL;
    else process.env.MODAL_SERVER_URL = saved;
  });

  it('puts an inference_error on an ack for every chunk, opens the circuit, and never stops acking', { timeout: 40_000 }, async () => {
    server = await startServer({ config: testConfig({ ...FAST, VISION_MAX_INFERENCE_FAILURES: '2' }), logger: logger() });
    const client = await connect();
    // The error of the chunk that opens the circuit rides on the ack after it: stream until it came.
    await stream(client, (acks) => errors(acks).length === 2);
    expect(onlySession().getSnapshot().context.degradedReason).toBe('circuit-open');
    const failed = errors(client.acks);
    for (const ack of failed) {
      // The client reads a stable text; the address Modal was tried at is in the log only (finding 17).
      expect(ack.inference_error).toBe('inference failed');
      expect(ack.window_id).toMatch(/-\d+$/);
    }
    expect(details().length).toBeGreaterThanOrEqual(2);
    for (const detail of details()) {
      expect(detail).toMatch(/^modal: .*UNAVAILABLE: .*ECONNREFUSED 127\.0\.0\.1:\d+\.$/);
      expect(detail).not.toContain('envsecret');
    }
    const before = client.acks.length;
    for (let i = 0; i < 10; i++) client.send(frame(10));
    await client.untilAcks(before + 10);
    expect(inOrder(client.acks)).toBe(true);
  });
});

describe('Modal adapter against the control-plane fake', () => {
  it('hands the sampled frames to infer_chunk through the SDK and puts the caption on the next ack', async () => {
    const fake = new FakeModalControlPlane();
    await startWithFake(fake, { VISION_CHUNK_SECONDS: '0.05', VISION_FRAMES_PER_CHUNK: '3' });
    const client = await connect();
    const sent: Buffer[] = [];
    let n = 0;
    const camera = setInterval(() => {
      const bytes = Buffer.from(`frame-${++n}`);
      sent.push(bytes);
      client.send(bytes);
    }, 5);
    await client.until(() => captions(client.acks).length >= 2, 'two captions').finally(() => clearInterval(camera));

    const [first] = fake.chunks;
    expect(first!.sessionId).toBe(onlySession().getSnapshot().context.sessionId);
    expect(first!.prompt).toBe(testConfig().vision.prompt);
    for (const chunk of fake.chunks) {
      expect(chunk.frames.length).toBeGreaterThan(0);
      expect(chunk.frames.length).toBeLessThanOrEqual(3);
      // Bytes went through CBOR as byte strings, each one a frame the client sent.
      for (const f of chunk.frames) expect(sent.some((s) => Buffer.from(f).equals(s))).toBe(true);
      expect(chunk.endS).toBeGreaterThanOrEqual(chunk.startS);
    }
    const caption = captions(client.acks)[0]!;
    expect(caption).toMatchObject({
      caption: `A person looks at ${first!.frames.length} frames.`,
      latency_ms: 41.5,
      tokens_generated: 9,
      chunk_start_s: first!.startS,
      chunk_end_s: first!.endS,
      window_id: `${first!.sessionId}-0`,
    });
    expect(inOrder(client.acks)).toBe(true);
  });

  it('shares one SDK client and one class lookup among sessions with the same credentials', async () => {
    const fake = new FakeModalControlPlane();
    await startWithFake(fake);
    const a = await connect();
    const b = await connect();
    await Promise.all([stream(a, (acks) => captions(acks).length >= 2), stream(b, (acks) => captions(acks).length >= 2)]);
    // Class lookups are cached per SDK client: one lookup means one client served both.
    expect(modal!.clients()).toBe(1);
    expect(fake.functionGets).toEqual([{ appName: 'foresight-gemma3-vlm', objectTag: 'Gemma3VLMSession.*' }]);
    expect(new Set(fake.chunks.map((c) => c.sessionId)).size).toBe(2);
  });

  it('gives a header pair its own client, app and class; names without a pair are ignored', async () => {
    const fake = new FakeModalControlPlane();
    fake.deployed.add('their-app/TheirVLM');
    await startWithFake(fake);
    const theirs = await connect({
      'x-modal-token-id': 'ak-theirs',
      'x-modal-token-secret': 'as-theirs',
      'x-modal-app-name': 'their-app',
      'x-modal-class-name': 'TheirVLM',
    });
    const namesOnly = await connect({ 'x-modal-app-name': 'their-app', 'x-modal-class-name': 'TheirVLM' });
    await Promise.all([
      stream(theirs, (acks) => captions(acks).length >= 1),
      stream(namesOnly, (acks) => captions(acks).length >= 1),
    ]);
    expect(modal!.clients()).toBe(2);
    expect(fake.functionGets).toHaveLength(2);
    expect(fake.functionGets).toEqual(
      expect.arrayContaining([
        { appName: 'their-app', objectTag: 'TheirVLM.*' },
        { appName: 'foresight-gemma3-vlm', objectTag: 'Gemma3VLMSession.*' },
      ]),
    );
    expect(new Set(fake.chunks.map((c) => c.sessionId)).size).toBe(2);
  });

  it('reports output that is not a caption as an inference_error and goes on', async () => {
    const fake = new FakeModalControlPlane();
    let call = 0;
    fake.answer = (c) => (++call === 1 ? 'just a string' : call === 2 ? { tokens_generated: 3 } : { caption: `ok ${c.frames.length}` });
    await startWithFake(fake);
    const client = await connect();
    await stream(client, (acks) => captions(acks).length >= 1);
    expect(errors(client.acks).map((a) => a.inference_error)).toEqual(['invalid inference output', 'invalid inference output']);
    expect(details()).toEqual([
      'invalid inference output: Invalid input: expected object, received string',
      'invalid inference output: caption: Invalid input: expected string, received undefined',
    ]);
    // Fields the model left out come from the chunk and the round trip.
    const caption = captions(client.acks)[0]!;
    expect(caption.chunk_start_s).toBe(fake.chunks[2]!.startS);
    expect(typeof caption.latency_ms).toBe('number');
    expect(caption).not.toHaveProperty('tokens_generated');
  });

  it("reports the model's exception on an ack, with no secret in it", async () => {
    const fake = new FakeModalControlPlane();
    let call = 0;
    fake.answer = () => {
      if (++call === 1) throw new RemoteException('ChunkError: none of the 2 frames decoded (key as-envsecret)');
      return { caption: 'fine' };
    };
    await startWithFake(fake);
    const client = await connect();
    await stream(client, (acks) => captions(acks).length >= 1);
    expect(errors(client.acks).map((a) => a.inference_error)).toEqual(['inference failed']);
    expect(details()).toEqual(['Remote error: ChunkError: none of the 2 frames decoded (key [redacted])']);
    expect(logLines.join('')).not.toContain('as-envsecret');
  });

  it('degrades a session whose class is not deployed with open-failed, said once on an ack', async () => {
    const fake = new FakeModalControlPlane();
    await startWithFake(fake, { MODAL_APP_NAME: 'not-deployed' });
    const client = await connect();
    await stream(client, (acks) => errors(acks).length >= 1);
    for (let i = 0; i < 20; i++) client.send(frame(10));
    await client.untilAcks(client.acks.length + 20);
    expect(errors(client.acks).map((a) => a.inference_error)).toEqual(['model unavailable']);
    expect(details()).toEqual(["Class 'not-deployed/Gemma3VLMSession' not found"]);
    expect(onlySession().getSnapshot().context.degradedReason).toBe("open-failed: Class 'not-deployed/Gemma3VLMSession' not found");
  });

  it('recovers a session that went degraded once Modal answers again, after the cooldown', { timeout: 40_000 }, async () => {
    const fake = new FakeModalControlPlane();
    fake.unavailable = true;
    await startWithFake(fake, { VISION_MAX_INFERENCE_FAILURES: '2', VISION_DEGRADED_COOLDOWN_S: '0.2' });
    const client = await connect();
    await stream(client, () => onlySession().getSnapshot().context.degradedReason === 'circuit-open');
    expect(errors(client.acks).every((a) => a.inference_error === 'inference failed')).toBe(true);
    expect(details().every((d) => /UNAVAILABLE: fake Modal is down/.test(String(d)))).toBe(true);
    fake.unavailable = false;
    await stream(client, (acks) => captions(acks).length >= 1);
    expect(onlySession().getSnapshot().context.degradedReason).toBeNull();
    expect(inOrder(client.acks)).toBe(true);
  });

  it('on disconnect during inference stops waiting and calls close(session_id)', async () => {
    const fake = new FakeModalControlPlane();
    fake.hang();
    await startWithFake(fake);
    const client = await connect();
    client.send(frame(10));
    client.send(frame(10));
    await fake.until(() => fake.chunks.length === 1);
    expect(onlySession().getSnapshot().value).toMatchObject({ active: { inference: 'inferring' } });
    await client.close();
    await fake.until(() => fake.closes.length === 1);
    expect(fake.closes).toEqual([fake.chunks[0]!.sessionId]);
    fake.releaseAll();
  });

  it('reports a model that does not answer within VISION_INFERENCE_TIMEOUT_MS', async () => {
    const fake = new FakeModalControlPlane();
    fake.hang();
    await startWithFake(fake, { VISION_INFERENCE_TIMEOUT_MS: '200' });
    const client = await connect();
    await stream(client, (acks) => errors(acks).length >= 1);
    expect(errors(client.acks)[0]!.inference_error).toBe('inference timed out');
    fake.releaseAll();
  });
});

describe('Modal SDK clients', () => {
  it('keeps at most maxClients, dropping the least recently used pair', async () => {
    const fake = new FakeModalControlPlane();
    modal = createModalInference({
      credentials: undefined,
      appName: 'foresight-gemma3-vlm',
      className: 'Gemma3VLMSession',
      timeoutMs: 1_000,
      maxClients: 2,
      client: { grpcMiddleware: [fake.middleware] },
    });
    const open = (n: number) =>
      modal!.open({ sessionId: `s${n}`, prompt: 'p', target: { tokenId: `ak-${n}`, tokenSecret: `as-${n}` } }, new AbortController().signal);
    for (const n of [1, 2, 1, 3]) expect((await open(n)).ok).toBe(true);
    expect(modal.clients()).toBe(2);
    await fake.until(() => fake.functionGets.length === 3);
    // Pair 2 was the least recently used: it needs a new client (and a new class lookup); pair 1 does not.
    // A chunk awaits its session's lookup, so after both chunks every lookup has been made.
    const chunk = { index: 0, windowId: 'w-0', frames: [Uint8Array.of(1)], startS: 0, endS: 1, framesSeen: 1 };
    for (const n of [1, 2]) {
      const session = await open(n);
      if (!session.ok) throw new Error('open failed');
      expect((await session.value.infer(chunk, new AbortController().signal)).ok).toBe(true);
    }
    expect(fake.functionGets).toHaveLength(4);
    expect(modal.clients()).toBe(2);
  });

  it('answers no-credentials without touching the SDK when neither env nor headers give a pair', async () => {
    modal = createModalInference({ credentials: undefined, appName: 'a', className: 'B', timeoutMs: 1_000 });
    expect(await modal.open({ sessionId: 's', prompt: 'p' }, new AbortController().signal)).toEqual({
      ok: false,
      error: { kind: 'no-credentials', message: 'no Modal credentials' },
    });
    expect(modal.clients()).toBe(0);
  });
});

describe('caption history: kept by the session, sent with every chunk (VISION_HISTORY_CAPTIONS)', () => {
  /** A model that names the session and counts its calls, so each caption is unique. */
  const counting = (fake: FakeModalControlPlane) => {
    const calls = new Map<string, number>();
    fake.answer = (call) => {
      const n = (calls.get(call.sessionId) ?? 0) + 1;
      calls.set(call.sessionId, n);
      return { caption: `${call.sessionId.slice(0, 8)} saw chunk ${n}.`, chunk_start_s: call.startS, chunk_end_s: call.endS };
    };
  };

  it("two sessions interleaved through one model: each chunk carries its own session's captions, oldest first, and nothing else's", async () => {
    const fake = new FakeModalControlPlane();
    counting(fake);
    await startWithFake(fake, { VISION_HISTORY_CAPTIONS: '3' });
    const [a, b] = await Promise.all([connect(), connect()]);
    await Promise.all([a, b].map((c) => stream(c, (acks) => captions(acks).length >= 6)));
    const bySession = new Map<string, ChunkCall[]>();
    for (const call of fake.chunks) bySession.set(call.sessionId, [...(bySession.get(call.sessionId) ?? []), call]);
    expect(bySession.size).toBe(2);
    for (const [sessionId, calls] of bySession) {
      const said = calls.map((_, i) => `${sessionId.slice(0, 8)} saw chunk ${i + 1}.`);
      calls.forEach((call, i) => {
        // The first chunk has no history: no sixth argument at all (an old deployment takes the call).
        expect(call.history).toEqual(i === 0 ? undefined : said.slice(Math.max(0, i - 3), i));
      });
    }
    // The calls of the two sessions did interleave.
    const order = fake.chunks.map((c) => c.sessionId);
    expect(order.some((id, i) => i > 0 && id !== order[i - 1])).toBe(true);
    const tree = (await (await fetch(`${server!.url}/debug/actors`)).json()) as { sessions: Array<{ historyLength: number }> };
    expect(tree.sessions.map((s) => s.historyLength)).toEqual([3, 3]);
  });

  it('VISION_HISTORY_CAPTIONS=0 sends none', async () => {
    const fake = new FakeModalControlPlane();
    await startWithFake(fake, { VISION_HISTORY_CAPTIONS: '0' });
    const client = await connect();
    await stream(client, (acks) => captions(acks).length >= 3);
    expect(fake.chunks.every((c) => c.history === undefined)).toBe(true);
  });

  it('a deployment from before history still captions: the first call with history is retried without it, later ones go without, and it is said once', async () => {
    const fake = new FakeModalControlPlane();
    fake.legacy = true;
    counting(fake);
    const config = testConfig({ ...FAST });
    modal = createModalInference({
      credentials: { tokenId: config.modal.tokenId!, tokenSecret: config.modal.tokenSecret! },
      appName: config.modal.appName,
      className: config.modal.className,
      timeoutMs: config.vision.inferenceTimeoutMs,
      client: { grpcMiddleware: [fake.middleware] },
      logger: logger(),
    });
    server = await startServer({ config, inference: modal, logger: logger() });
    const client = await connect();
    await stream(client, (acks) => captions(acks).length >= 4);
    expect(errors(client.acks)).toEqual([]);
    const withHistory = fake.chunks.filter((c) => c.history !== undefined);
    expect(withHistory).toHaveLength(1);
    expect(fake.chunks.indexOf(withHistory[0]!)).toBe(1);
    expect(fake.chunks.slice(2).every((c) => c.history === undefined)).toBe(true);
    const warnings = logLines.filter((l) => l.includes('takes no caption history'));
    expect(warnings).toHaveLength(1);
  });

  /** The port alone, on a virtual clock, against the fake with the server's pair. */
  const portSession = async (fake: FakeModalControlPlane, clock: { ms: number }, level: 'warn' | 'info' = 'warn') => {
    modal = createModalInference({
      credentials: { tokenId: 'ak-h', tokenSecret: 'as-h' },
      appName: 'foresight-gemma3-vlm',
      className: 'Gemma3VLMSession',
      timeoutMs: 5_000,
      client: { grpcMiddleware: [fake.middleware] },
      logger: createLogger(level, new Writable({ write: (chunk: Buffer, _enc, done) => (logLines.push(chunk.toString()), done()) }), {
        rateLimit: { lines: 0, windowMs: 1 },
      }),
      now: () => clock.ms,
    });
    const opened = await modal.open({ sessionId: 's-h', prompt: 'p' }, new AbortController().signal);
    if (!opened.ok) throw new Error('open failed');
    const chunk = { index: 0, windowId: 'w-0', frames: [Uint8Array.of(1)], startS: 0, endS: 1, framesSeen: 1, history: ['Before.'] };
    return () => opened.value.infer(chunk, new AbortController().signal);
  };

  it('a class marked as taking no history is asked again after legacyRecheckMs (300 s), so a redeployment gets history back without a restart', async () => {
    const fake = new FakeModalControlPlane();
    fake.legacy = true;
    const clock = { ms: 1_000 };
    const infer = await portSession(fake, clock, 'info');
    expect((await infer()).ok).toBe(true);
    expect(fake.chunks.map((c) => c.history)).toEqual([['Before.'], undefined]);
    clock.ms += 299_999;
    expect((await infer()).ok).toBe(true);
    expect(fake.chunks.slice(2).map((c) => c.history)).toEqual([undefined]);
    fake.legacy = false; // redeployed from modal/
    clock.ms += 1;
    expect((await infer()).ok).toBe(true);
    expect((await infer()).ok).toBe(true);
    expect(fake.chunks.slice(3).map((c) => c.history)).toEqual([['Before.'], ['Before.']]);
    expect(logLines.filter((l) => l.includes('takes no caption history'))).toHaveLength(1);
    expect(logLines.filter((l) => l.includes('takes caption history again'))).toHaveLength(1);
  });

  it("a TypeError raised inside the model is that chunk's error, not an old deployment: no second call, history goes on", async () => {
    const fake = new FakeModalControlPlane();
    let calls = 0;
    fake.answer = () => {
      calls += 1;
      if (calls === 1) throw new RemoteException('TypeError: SiglipVisionEmbeddings.forward() takes 2 positional arguments but 3 were given');
      return { caption: 'A desk.' };
    };
    const infer = await portSession(fake, { ms: 0 });
    const failed = await infer();
    expect(failed.ok).toBe(false);
    expect(failed.ok ? undefined : failed.error.kind).toBe('remote');
    expect(failed.ok ? '' : failed.error.message).toContain('SiglipVisionEmbeddings.forward()');
    expect((await infer()).ok).toBe(true);
    expect(fake.chunks.map((c) => c.history)).toEqual([['Before.'], ['Before.']]);
    expect(logLines.filter((l) => l.includes('takes no caption history'))).toEqual([]);
  });

  it("control characters in the model's caption never reach clients (terminal escapes, NUL, bidi overrides)", async () => {
    const fake = new FakeModalControlPlane();
    fake.answer = () => ({ caption: '\u001b[2JA desk\u0000 with\u202e a\n lamp.' });
    const infer = await portSession(fake, { ms: 0 });
    const result = await infer();
    expect(result.ok && result.value.caption).toBe('[2JA desk with a lamp.');
  });

  it('keeps at most 300 characters of each caption in the history, however long the answer', async () => {
    const fake = new FakeModalControlPlane();
    fake.answer = (call) => ({ caption: `${'A very long look around the room '.repeat(100)}.`, chunk_start_s: call.startS, chunk_end_s: call.endS });
    await startWithFake(fake, {});
    const client = await connect();
    await stream(client, (acks) => captions(acks).length >= 3);
    const sent = fake.chunks.flatMap((c) => c.history ?? []);
    expect(sent.length).toBeGreaterThan(0);
    expect(sent.every((entry) => entry.length === 300)).toBe(true);
    expect(String(captions(client.acks)[0]!.caption).length).toBeGreaterThan(3_000);
  });
});
