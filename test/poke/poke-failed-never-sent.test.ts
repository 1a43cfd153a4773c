import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import type { PokeSenderInput } from '../../src/machines/poke.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { FakeHttpServer, type ReceivedRequest } from '../fakes/http-server.ts';
import { testConfig } from '../helpers/config.ts';

// Finding 6: /poke/send answered 502 at its timeout under load but left the message queued,
// and it was sent later: a client that retried sent a second SMS. Finding 16: a /poke/send
// in flight at SIGTERM was cut with no answer.

let server: RunningServer | undefined;
let poke: FakeHttpServer | undefined;
const held: ServerResponse[] = [];
afterEach(async () => {
  for (const res of held.splice(0)) if (!res.writableEnded) res.writeHead(200).end('{}');
  await server?.close();
  await poke?.stop();
  server = undefined;
  poke = undefined;
});

async function start(respond: (req: ReceivedRequest, res: ServerResponse) => void, env: Record<string, string> = {}, options: PokeSenderInput = {}) {
  poke = new FakeHttpServer();
  poke.respond = respond;
  const url = `${await poke.start()}/api/v1/inbound-sms/webhook`;
  server = await startServer({
    config: testConfig({ POKE_API_URL: url, POKE_API_KEY: 'k', ...env }),
    poke: { policy: { maxAttempts: 4, baseDelayMs: 1, maxDelayMs: 5_000 }, ...options },
  });
  return server.url;
}

const hold = (_req: ReceivedRequest, res: ServerResponse) => held.push(res);
const send = (url: string, message: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/poke/send`, { method: 'POST', body: JSON.stringify({ message }), headers: { 'content-type': 'application/json', ...headers } });
const settle = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const messages = () => poke!.received.map((r) => (r.body as { message: string }).message);

describe('a /poke/send answered as failed is never sent afterwards (finding 6)', () => {
  it('drops a request that timed out in the queue: 504, and Poke never gets it', async () => {
    const url = await start(hold, { POKE_REQUEST_TIMEOUT_S: '0.3' }, { concurrency: 1 });
    const first = send(url, 'first');
    await poke!.until(() => poke!.received.length === 1);
    const second = await send(url, 'second'); // waits behind the first, which Poke holds
    expect(second.status).toBe(504);
    expect(await second.json()).toEqual({ detail: 'Poke request timed out: not sent' });
    held[0]!.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":1}');
    expect((await first).status).toBe(200); // it timed out too, but its attempt was under way: told as it ended
    await settle(300);
    expect(messages()).toEqual(['first']);
  });

  it('stops retrying a request that timed out in its backoff: 502, and no attempt after', async () => {
    const busy = (_req: ReceivedRequest, res: ServerResponse) => res.writeHead(503, { 'retry-after': '1' }).end('{}');
    const url = await start(busy, { POKE_REQUEST_TIMEOUT_S: '0.3' });
    const res = await send(url, 'once');
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ detail: 'Poke request timed out' });
    await settle(1_500);
    expect(messages()).toEqual(['once']);
  });

  it('reports an attempt that was under way at the timeout as it ended', async () => {
    const url = await start(hold, { POKE_REQUEST_TIMEOUT_S: '0.2' });
    const pending = send(url, 'slow');
    await poke!.until(() => poke!.received.length === 1);
    await settle(400); // past the timeout: the attempt under way is waited for
    held[0]!.writeHead(200, { 'content-type': 'application/json' }).end('{"queued":true}');
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ success: true, data: { queued: true } });
  });
});

describe('Idempotency-Key (finding 6)', () => {
  it('answers a retry with the first outcome instead of sending again', async () => {
    const url = await start((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":"m1"}'));
    const first = await send(url, 'drink water', { 'idempotency-key': 'k-1' });
    const again = await send(url, 'drink water', { 'idempotency-key': 'k-1' });
    expect(first.status).toBe(200);
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual(await first.json());
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(messages()).toEqual(['drink water']);
    // Another key is another request.
    expect((await send(url, 'drink water', { 'idempotency-key': 'k-2' })).status).toBe(200);
    expect(messages()).toHaveLength(2);
  });

  it('replays a failure too, and answers 409 while the first is under way, 422 for another message', async () => {
    const url = await start(hold);
    const first = send(url, 'stretch', { 'idempotency-key': 'k-3' });
    await poke!.until(() => poke!.received.length === 1);
    const during = await send(url, 'stretch', { 'idempotency-key': 'k-3' });
    expect(during.status).toBe(409);
    expect(await during.json()).toEqual({ detail: 'a request with this Idempotency-Key is still in progress' });
    const other = await send(url, 'something else', { 'idempotency-key': 'k-3' });
    expect(other.status).toBe(422);
    held[0]!.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"bad number"}');
    const failed = await first;
    expect(failed.status).toBe(502);
    const retried = await send(url, 'stretch', { 'idempotency-key': 'k-3' });
    expect(retried.status).toBe(502);
    expect(await retried.json()).toEqual(await failed.json());
    expect(messages()).toEqual(['stretch']);
  });

  it('forgets the key of a request that never went out, so it may be tried again', async () => {
    const url = await start(hold, { POKE_REQUEST_TIMEOUT_S: '0.2' }, { concurrency: 1 });
    void send(url, 'blocker');
    await poke!.until(() => poke!.received.length === 1);
    expect((await send(url, 'later', { 'idempotency-key': 'k-4' })).status).toBe(504);
    held[0]!.writeHead(200).end('{}');
    poke!.respond = (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    expect((await send(url, 'later', { 'idempotency-key': 'k-4' })).status).toBe(200);
    expect(messages()).toEqual(['blocker', 'later']);
  });

  it.each([['an empty key', '""'], ['a key over 255 characters', 'x'.repeat(256)], ['a key with a space', 'a b']])(
    'answers 400 to %s',
    async (_what, key) => {
      const url = await start(() => undefined);
      const res = await send(url, 'hi', { 'idempotency-key': key });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ detail: 'Idempotency-Key: 1 to 255 visible ASCII characters' });
      expect(poke!.received).toEqual([]);
    },
  );
});

describe('shutdown answers what is in flight (finding 16)', () => {
  it('answers a /poke/send whose attempt hangs with 502 before it stops (Poke may have it), and sends nothing after', async () => {
    const url = await start(hold);
    const pending = send(url, 'at shutdown');
    await poke!.until(() => poke!.received.length === 1);
    const started = performance.now();
    const closing = server!.close();
    const res = await pending;
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ detail: 'server shutting down while the message was being sent' });
    await closing;
    server = undefined;
    expect(performance.now() - started).toBeLessThan(8_000);
    expect(messages()).toEqual(['at shutdown']);
  });
});

describe('shutdown, a send that never went out', () => {
  it('answers 503 for a send still queued, which may be tried again', async () => {
    const url = await start(hold, {}, { concurrency: 1 });
    void send(url, 'in flight');
    await poke!.until(() => poke!.received.length === 1);
    const queued = send(url, 'queued', { 'idempotency-key': 'q-1' });
    await new Promise((resolve) => setTimeout(resolve, 50));
    const closing = server!.close();
    const res = await queued;
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ detail: 'server shutting down' });
    await closing;
    server = undefined;
    expect(messages()).toEqual(['in flight']);
  });
});

describe('IdempotencyKeys bounds', () => {
  it("never forgets a key under way, and one caller's keys never push out another's", async () => {
    const { IdempotencyKeys } = await import('../../src/routes/poke.ts');
    const keys = new IdempotencyKeys({ maxKeys: 3, maxScopes: 2 });
    expect(keys.begin('victim', 'k', 'm')).toEqual({ state: 'new' }); // under way
    // Another caller floods its own scope: its oldest answered keys go, nothing of the victim's.
    for (let i = 0; i < 100; i++) {
      expect(keys.begin('flood', `f${i}`, 'x')).toEqual({ state: 'new' });
      keys.finish('flood', `f${i}`, { status: 502, body: {} }, true);
    }
    expect(keys.begin('victim', 'k', 'm')).toEqual({ state: 'in-progress' });
    // A third caller finds no scope with nothing under way but the flood's: that one goes.
    expect(keys.begin('third', 't', 'y')).toEqual({ state: 'new' });
    expect(keys.begin('victim', 'k', 'm')).toEqual({ state: 'in-progress' });
    keys.finish('victim', 'k', { status: 200, body: { ok: 1 } }, true);
    expect(keys.begin('victim', 'k', 'm')).toEqual({ state: 'answered', status: 200, body: { ok: 1 } });
    // A scope full of keys under way takes no more.
    for (const k of ['a', 'b', 'c']) expect(keys.begin('third', `${k}x`, 'y').state).toMatch(/new|full/);
    expect(keys.begin('third', 'zz', 'y')).toEqual({ state: 'full' });
  });
});
