import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createCaptionSink, workerCaptionWriter, type CaptionWriter, type WriteFailure } from '../../src/adapters/caption-sink.ts';
import type { Logger } from '../../src/adapters/logger.ts';
import { openSqliteStore } from '../../src/adapters/sqlite-store.ts';
import { err, ok, type Result } from '../../src/result.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { FakeInference } from '../fakes/inference.ts';
import { FakeHttpServer } from '../fakes/http-server.ts';
import { testConfig } from '../helpers/config.ts';
import { frame, GlassesClient, type Ack } from '../helpers/ws-client.ts';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {}, child: () => quiet };
const caption = (n: number) => ({ windowId: `w-${n}`, timestamp: n, chunkStartS: 0, chunkEndS: 1, caption: `c${n}` });

let server: RunningServer | undefined;
let worker: FakeHttpServer | undefined;
const clients: GlassesClient[] = [];
const closers: Array<() => void> = [];
afterEach(async () => {
  for (const c of clients.splice(0)) if (c.closeCode === undefined) await c.close();
  await server?.close();
  for (const close of closers.splice(0)) close();
  await worker?.stop();
  server = undefined;
  worker = undefined;
});

const streamUntilCaption = (client: GlassesClient) => client.sendUntil((ack) => ack.caption !== undefined, 16);

/** The caption window an ack's fields should be stored as (the fake model reports 12 ms and 7 tokens). */
const storedCaptionOf = (ack: Ack) => ({
  windowId: ack.window_id,
  chunkStartS: ack.chunk_start_s,
  chunkEndS: ack.chunk_end_s,
  caption: ack.caption,
  latencyMs: 12,
  tokensGenerated: 7,
});

/** A loopback Worker answering with `respond`, a server whose captions go to it, and a connected client. */
async function streamingToWorker(respond: FakeHttpServer['respond']) {
  worker = new FakeHttpServer();
  worker.respond = respond;
  const base = await worker.start();
  server = await startServer({
    config: testConfig({ VISION_CHUNK_SECONDS: '0.001', WORKER_BASE_URL: base, MAGIC_WORD: 'sesame' }),
    inference: new FakeInference({ auto: () => undefined }),
  });
  const client = await GlassesClient.connect(server.url, { headers: { 'x-magic-word': 'sesame' } });
  clients.push(client);
  return { worker, server, client };
}

describe('caption sink (SPEC §4, §10)', () => {
  it("writes a session's captions to SQLite with their window ids, chunk times and latency", async () => {
    const store = openSqliteStore({ path: ':memory:' });
    closers.push(() => store.close());
    server = await startServer({
      config: testConfig({ VISION_CHUNK_SECONDS: '0.001' }),
      store,
      inference: new FakeInference({ auto: () => undefined }),
    });
    const client = await GlassesClient.connect(server.url);
    clients.push(client);
    const ack = await streamUntilCaption(client);
    await vi.waitFor(async () => expect((await store.windowsSince(0)).captions.length).toBeGreaterThan(0));
    const [row] = (await store.windowsSince(0)).captions;
    expect(row).toMatchObject(storedCaptionOf(ack));
    expect(row!.windowId).toMatch(/^[0-9a-f-]{36}-0$/);
  });

  it('posts captions to the Worker with the magic word, retrying after a 503', async () => {
    let answers = 0;
    const { worker, server, client } = await streamingToWorker((_req, res: ServerResponse) => {
      answers += 1;
      res.writeHead(answers === 1 ? 503 : 200, { 'content-type': 'application/json' }).end('{}');
    });
    const ack = await streamUntilCaption(client);
    await worker.until(() => worker.received.filter((r) => (r.body as { windowId: string }).windowId === ack.window_id).length === 2);
    const [first, second] = worker.received.filter((r) => (r.body as { windowId: string }).windowId === ack.window_id);
    expect(first).toEqual(second);
    expect(first).toMatchObject({
      method: 'POST',
      path: '/captions/upload',
      headers: { 'x-magic-word': 'sesame', 'content-type': 'application/json' },
      body: storedCaptionOf(ack),
    });
    expect(server.captionSink.stats()).toMatchObject({ retried: 1 });
  });

  it("reads at most 128 KiB of the Worker's answer: one that never ends still counts as written", async () => {
    worker = new FakeHttpServer();
    worker.respond = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const piece = Buffer.alloc(65_536, 0x20);
      let sent = 0;
      // Up to 2 GiB, until the client hangs up.
      const pump = () => {
        while (sent < 2 ** 31 && !res.destroyed) {
          sent += piece.length;
          if (!res.write(piece)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    };
    const writer = workerCaptionWriter({ baseUrl: await worker.start(), magicWord: 'sesame', timeoutMs: 10_000 });
    closers.push(() => void writer.close());
    expect(await writer([caption(1)])).toEqual(ok(undefined));
    expect(worker.received).toHaveLength(1);
  });

  it('flushes pending writes when the server stops', async () => {
    worker = new FakeHttpServer();
    const held: ServerResponse[] = [];
    worker.respond = (_req, res) => held.push(res);
    const base = await worker.start();
    server = await startServer({
      config: testConfig({ WORKER_BASE_URL: base, MAGIC_WORD: 'sesame' }),
    });
    server.captionSink.write(caption(1));
    await worker.until(() => worker!.received.length === 1);
    let stopped = false;
    const closing = server.close().then(() => (stopped = true));
    await new Promise((resolve) => setImmediate(resolve));
    expect(stopped).toBe(false); // waiting for the write in flight
    held[0]!.writeHead(200).end('{}');
    await closing;
    expect(server.captionSink.stats()).toMatchObject({ written: 1, pending: 0 });
    server = undefined;
  });

  it('never slows acks when the Worker does not answer', async () => {
    const { worker, client } = await streamingToWorker(() => undefined); // hangs every request
    await streamUntilCaption(client);
    await worker.until(() => worker.received.length > 0);
    for (let i = 0; i < 200; i++) client.send(frame(64));
    await client.untilAcks(client.acks.length + 200);
    expect(server!.captionSink.stats().written).toBe(0);
    // The sink keeps its writes; a bounded shutdown gives up on them and says so.
    await client.close();
    await server!.close(1_000);
    server = undefined;
  });
});

/** A writer that records each batch's window ids and answers the nth batch with `answer(n)`. */
function recording(answer: (n: number) => Result<void, WriteFailure> = () => ok(undefined)) {
  const batches: string[][] = [];
  const writer: CaptionWriter = async (captions) => {
    batches.push(captions.map((c) => c.windowId));
    return answer(batches.length);
  };
  return { batches, writer };
}

describe('createCaptionSink', () => {
  it('refuses writes past the queue bound and counts them', async () => {
    const never: CaptionWriter = () => new Promise(() => undefined);
    const sink = createCaptionSink(never, { logger: quiet, maxQueue: 3, concurrency: 1 });
    for (let i = 0; i < 5; i++) sink.write(caption(i));
    expect(sink.stats()).toMatchObject({ pending: 3, dropped: 2 });
    expect(await sink.flush(10)).toBe(3);
  });

  it('does not retry a failure marked final, and gives up after maxAttempts', async () => {
    const calls: string[] = [];
    const writer: CaptionWriter = async ([c]) => {
      calls.push(c!.windowId);
      return err({ retryable: c!.windowId === 'w-1', message: 'nope' });
    };
    const sink = createCaptionSink(writer, { logger: quiet, maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 1 });
    sink.write(caption(0));
    sink.write(caption(1));
    await vi.waitFor(() => expect(sink.stats()).toMatchObject({ failed: 2, pending: 0 }));
    expect(calls.filter((w) => w === 'w-0')).toHaveLength(1);
    expect(calls.filter((w) => w === 'w-1')).toHaveLength(3);
  });

  it('retries at once on flush instead of waiting out the backoff', async () => {
    let calls = 0;
    const writer: CaptionWriter = async () => (++calls === 1 ? err({ retryable: true, message: 'busy' }) : ok(undefined));
    const sink = createCaptionSink(writer, { logger: quiet, baseDelayMs: 60_000, maxDelayMs: 60_000 });
    sink.write(caption(0));
    await vi.waitFor(() => expect(sink.stats().retried).toBe(1));
    expect(await sink.flush(1_000)).toBe(0);
    expect(sink.stats()).toMatchObject({ written: 1, pending: 0 });
  });

  it('gathers the captions written within lingerMs into one batch', async () => {
    const { batches, writer } = recording();
    const sink = createCaptionSink(writer, { logger: quiet, batchSize: 10, lingerMs: 20 });
    for (let i = 0; i < 3; i++) sink.write(caption(i));
    expect(batches).toEqual([]);
    await vi.waitFor(() => expect(sink.stats()).toMatchObject({ written: 3, pending: 0 }));
    expect(batches).toEqual([['w-0', 'w-1', 'w-2']]);
  });

  it('writes a full batch at once, and the rest on flush without waiting out the linger', async () => {
    const { batches, writer } = recording();
    const sink = createCaptionSink(writer, { logger: quiet, batchSize: 2, lingerMs: 60_000 });
    for (let i = 0; i < 3; i++) sink.write(caption(i));
    expect(batches).toEqual([['w-0', 'w-1']]);
    expect(await sink.flush(1_000)).toBe(0);
    expect(batches).toEqual([['w-0', 'w-1'], ['w-2']]);
  });

  it('writes a caption at once when idle, and gathers the next ones for at most spacingMs', async () => {
    const { batches, writer } = recording();
    const sink = createCaptionSink(writer, { logger: quiet, batchSize: 10, concurrency: 1, spacingMs: 40 });
    const first = sink.write(caption(0));
    expect(batches).toEqual([['w-0']]);
    expect(await first).toBe(true);
    const later = [1, 2, 3].map((n) => sink.write(caption(n)));
    expect(batches).toEqual([['w-0']]); // within 40 ms of the last batch: they wait, together
    expect(await Promise.all(later)).toEqual([true, true, true]);
    expect(batches).toEqual([['w-0'], ['w-1', 'w-2', 'w-3']]);
    // Flushing does not wait out the spacing.
    sink.write(caption(4));
    expect(await sink.flush(1_000)).toBe(0);
    expect(batches.at(-1)).toEqual(['w-4']);
  });

  it('says whether each caption was stored', async () => {
    const { writer } = recording((n) => (n === 1 ? err({ retryable: false, message: 'constraint' }) : ok(undefined)));
    const sink = createCaptionSink(writer, { logger: quiet, concurrency: 1, maxQueue: 2 });
    const refused = sink.write(caption(0));
    const stored = sink.write(caption(1));
    const dropped = sink.write(caption(2)); // the queue holds 2
    expect(await Promise.all([refused, stored, dropped])).toEqual([false, true, false]);
  });

  it('retries a failed batch whole, each caption counted', async () => {
    const { batches, writer } = recording((n) => (n === 1 ? err({ retryable: true, message: 'busy' }) : ok(undefined)));
    const sink = createCaptionSink(writer, { logger: quiet, batchSize: 2, lingerMs: 60_000, baseDelayMs: 1, maxDelayMs: 1 });
    sink.write(caption(0));
    sink.write(caption(1));
    await vi.waitFor(() => expect(sink.stats()).toMatchObject({ written: 2, retried: 2, pending: 0 }));
    expect(batches).toEqual([
      ['w-0', 'w-1'],
      ['w-0', 'w-1'],
    ]);
  });
});
