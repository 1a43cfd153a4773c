import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createPokeClient } from '../../src/adapters/poke.ts';
import type { PokeSenderInput } from '../../src/machines/poke.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { FakeHttpServer, type ReceivedRequest } from '../fakes/http-server.ts';
import { testConfig } from '../helpers/config.ts';

let server: RunningServer | undefined;
let poke: FakeHttpServer | undefined;
afterEach(async () => {
  await server?.close();
  await poke?.stop();
  server = undefined;
  poke = undefined;
});

const fast: PokeSenderInput = { policy: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 5 } };

async function start(
  respond: (req: ReceivedRequest, res: ServerResponse) => void,
  options: { env?: Record<string, string>; poke?: PokeSenderInput; timeoutMs?: number } = {},
) {
  poke = new FakeHttpServer();
  poke.respond = respond;
  const url = `${await poke.start()}/api/v1/inbound-sms/webhook`;
  server = await startServer({
    config: testConfig({ POKE_API_URL: url, ...options.env }),
    poke: options.poke ?? fast,
    ...(options.timeoutMs ? { pokeClient: createPokeClient({ url, timeoutMs: options.timeoutMs }) } : {}),
  });
  return server.url;
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) => (_req: ReceivedRequest, res: ServerResponse) =>
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));

const send = (url: string, body: string, headers: Record<string, string> = {}) =>
  fetch(`${url}/poke/send`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });

describe('POST /poke/send (SPEC §3, §6)', () => {
  it('delivers through the sender with the env key and returns the upstream JSON', async () => {
    const url = await start(json(200, { queued: true, id: 'm1' }), { env: { POKE_API_KEY: 'env-key' } });
    const res = await send(url, JSON.stringify({ message: 'drink some water' }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ success: true, data: { queued: true, id: 'm1' } });
    expect(poke!.received).toEqual([
      expect.objectContaining({
        method: 'POST',
        path: '/api/v1/inbound-sms/webhook',
        headers: expect.objectContaining({ authorization: 'Bearer env-key', 'content-type': 'application/json' }),
        body: { message: 'drink some water' },
      }),
    ]);
  });

  it('prefers the x-poke-api-key header over the env key', async () => {
    const url = await start(json(200, {}), { env: { POKE_API_KEY: 'env-key' } });
    await send(url, JSON.stringify({ message: 'hi' }), { 'x-poke-api-key': 'header-key' });
    expect(poke!.received[0]!.headers.authorization).toBe('Bearer header-key');
  });

  it('answers 500 without a key and calls nobody', async () => {
    const url = await start(json(200, {}));
    const res = await send(url, JSON.stringify({ message: 'hi' }));
    expect(res.status).toBe(500);
    expect(await res.json()).toEqual({ detail: 'Poke API key not configured' });
    expect(poke!.received).toHaveLength(0);
  });

  it.each([
    ['a missing message', '{}', [{ loc: ['body', 'message'], msg: 'Invalid input: expected string, received undefined', type: 'invalid_type' }]],
    ['an empty message', '{"message":""}', [{ loc: ['body', 'message'], msg: 'Too small: expected string to have >=1 characters', type: 'too_small' }]],
    ['a message over 1600 characters', JSON.stringify({ message: 'x'.repeat(1601) }), [{ loc: ['body', 'message'], msg: 'Too big: expected string to have <=1600 characters', type: 'too_big' }]],
    ['a message that is not a string', '{"message":42}', [{ loc: ['body', 'message'], msg: 'Invalid input: expected string, received number', type: 'invalid_type' }]],
    ['a body that is not JSON', 'message=hi', [{ loc: ['body'], msg: 'invalid JSON', type: 'json_invalid' }]],
    ['a body that is an array', '["hi"]', [{ loc: ['body'], msg: 'Invalid input: expected object, received array', type: 'invalid_type' }]],
    ['an empty body', '', [{ loc: ['body'], msg: 'invalid JSON', type: 'json_invalid' }]],
  ])('answers 422 for %s', async (_name, body, detail) => {
    const url = await start(json(200, {}), { env: { POKE_API_KEY: 'k' } });
    const res = await send(url, body);
    expect(res.status).toBe(422);
    expect(await res.json()).toEqual({ detail });
    expect(poke!.received).toHaveLength(0);
  });

  it('reads a body labelled with any spelling of UTF-8, as the uploads do', async () => {
    const url = await start(json(200, { queued: true }), { env: { POKE_API_KEY: 'k' } });
    for (const contentType of ['application/json; charset=UTF8', 'application/json; charset=utf8', 'text/plain']) {
      const res = await send(url, JSON.stringify({ message: 'Café ☕' }), { 'content-type': contentType });
      expect(res.status).toBe(200);
    }
    expect(poke!.received.map((r) => r.body)).toEqual(Array(3).fill({ message: 'Café ☕' }));
  });

  it('answers 415 naming a charset that is not UTF-8, and sends nothing', async () => {
    const url = await start(json(200, {}), { env: { POKE_API_KEY: 'k' } });
    const res = await send(url, JSON.stringify({ message: 'hi' }), { 'content-type': 'application/json; charset=latin1' });
    expect(res.status).toBe(415);
    expect(await res.json()).toEqual({ detail: 'content-type: charset "latin1" is not supported, send UTF-8' });
    expect(poke!.received).toHaveLength(0);
  });

  it('retries a 5xx and then succeeds', async () => {
    let calls = 0;
    const url = await start((req, res) => (++calls < 3 ? json(503, { error: 'busy' })(req, res) : json(200, { ok: 1 })(req, res)), {
      env: { POKE_API_KEY: 'k' },
    });
    const res = await send(url, JSON.stringify({ message: 'hi' }));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ success: true, data: { ok: 1 } });
    expect(poke!.received).toHaveLength(3);
  });

  it('retries a 429 after its Retry-After', async () => {
    let calls = 0;
    const url = await start((req, res) => (++calls === 1 ? json(429, {}, { 'retry-after': '0' })(req, res) : json(200, { ok: 2 })(req, res)), {
      env: { POKE_API_KEY: 'k' },
    });
    const res = await send(url, JSON.stringify({ message: 'hi' }));
    expect(res.status).toBe(200);
    expect(poke!.received).toHaveLength(2);
  });

  it('does not retry a 400 and answers 502 with the reason', async () => {
    const url = await start(json(400, { error: 'bad number' }), { env: { POKE_API_KEY: 'k' } });
    const res = await send(url, JSON.stringify({ message: 'hi' }));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ detail: 'Poke API answered 400' });
    expect(poke!.received).toHaveLength(1);
  });

  it('answers 502 when every attempt fails', async () => {
    const url = await start(json(500, {}), { env: { POKE_API_KEY: 'k' } });
    const res = await send(url, JSON.stringify({ message: 'hi' }));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ detail: 'Poke API answered 500' });
    expect(poke!.received).toHaveLength(3);
  });

  it('answers 502 on a timeout', async () => {
    const url = await start(() => undefined, {
      env: { POKE_API_KEY: 'k' },
      poke: { policy: { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 1 } },
      timeoutMs: 50,
    });
    const res = await send(url, JSON.stringify({ message: 'hi' }));
    expect(res.status).toBe(502);
    expect(await res.json()).toEqual({ detail: 'Poke API did not answer within 50 ms' });
    expect(poke!.received).toHaveLength(2);
  });

  it('refuses at once when the queue is full', async () => {
    const held: ServerResponse[] = [];
    const url = await start((_req, res) => held.push(res), {
      env: { POKE_API_KEY: 'k' },
      poke: { concurrency: 1, maxQueue: 1, policy: fast.policy! },
    });
    const first = send(url, JSON.stringify({ message: 'one' }));
    await poke!.until(() => poke!.received.length === 1);
    const second = send(url, JSON.stringify({ message: 'two' }));
    // The second waits in the queue; the third finds it full.
    await vi.waitFor(() => expect(server!.supervisor.system.get('pokeSender')?.getSnapshot().context.queue).toHaveLength(1));
    const third = await send(url, JSON.stringify({ message: 'three' }));
    expect(third.status).toBe(503);
    expect(await third.json()).toEqual({ detail: 'Poke queue full' });
    held[0]!.writeHead(200).end('{}');
    expect((await first).status).toBe(200);
    await poke!.until(() => poke!.received.length === 2);
    held[1]!.writeHead(200).end('{}');
    expect((await second).status).toBe(200);
  });
});
