import { afterEach, describe, expect, it } from 'vitest';
import { createPokeClient } from '../../src/adapters/poke.ts';
import { createFetchPokeClient } from '../../src/adapters/poke-protocol.ts';
import { FakeHttpServer } from '../fakes/http-server.ts';
import { closedPort } from '../helpers/ports.ts';

// The Node client (undici) and the Worker's (fetch) must read Poke's answers alike.
const clients = [
  ['undici', createPokeClient],
  ['fetch', createFetchPokeClient],
] as const;

let upstream: FakeHttpServer | undefined;
afterEach(async () => {
  await upstream?.stop();
  upstream = undefined;
});

async function poke(respond: FakeHttpServer['respond']) {
  upstream = new FakeHttpServer();
  upstream.respond = respond;
  return `${await upstream.start()}/webhook`;
}

describe.each(clients)('Poke client over %s', (_name, create) => {
  it('posts the message with the bearer key and returns the JSON answer', async () => {
    const url = await poke((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"id":7}'));
    const client = create({ url });
    expect(await client.send('hello', 'pk-1')).toEqual({ ok: true, value: { id: 7 } });
    expect(upstream!.received[0]).toMatchObject({ method: 'POST', path: '/webhook', body: { message: 'hello' } });
    expect(upstream!.received[0]!.headers.authorization).toBe('Bearer pk-1');
    await client.close();
  });

  it('marks 5xx and 429 retryable with their Retry-After, other 4xx not', async () => {
    let status = 503;
    const url = await poke((_req, res) => res.writeHead(status, { 'retry-after': '2' }).end('{}'));
    const client = create({ url });
    expect(await client.send('x', 'k')).toEqual({
      ok: false,
      error: { kind: 'http', status: 503, retryable: true, retryAfterMs: 2000, reason: 'Poke API answered 503' },
    });
    status = 429;
    expect(await client.send('x', 'k')).toMatchObject({ ok: false, error: { status: 429, retryable: true } });
    status = 400;
    expect(await client.send('x', 'k')).toMatchObject({ ok: false, error: { status: 400, retryable: false } });
    await client.close();
  });

  it('reads no more than 64 KiB of an answer: a long 2xx is still the delivery (null), a long 5xx still its status', async () => {
    let status = 200;
    let chunked = false;
    const body = `{"log":"${'x'.repeat(5_000_000)}"}`;
    const url = await poke((_req, res) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      if (!chunked) return res.end(body);
      // No Content-Length: the body arrives in pieces until the client stops reading.
      for (let i = 0; i < 50; i += 1) res.write('y'.repeat(100_000));
      res.end();
    });
    const client = create({ url });
    expect(await client.send('x', 'k')).toEqual({ ok: true, value: null });
    chunked = true;
    expect(await client.send('x', 'k')).toEqual({ ok: true, value: null });
    status = 502;
    expect(await client.send('x', 'k')).toEqual({ ok: false, error: { kind: 'http', status: 502, retryable: true, reason: 'Poke API answered 502' } });
    expect(upstream!.received).toHaveLength(3);
    await client.close();
  });

  it('reports a timeout and an unreachable server as retryable', async () => {
    const url = await poke(() => undefined); // never answers
    const slow = create({ url, timeoutMs: 100 });
    expect(await slow.send('x', 'k')).toEqual({
      ok: false,
      error: { kind: 'timeout', retryable: true, reason: 'Poke API did not answer within 100 ms' },
    });
    await slow.close();
    const port = await closedPort();
    const down = create({ url: `http://127.0.0.1:${port}/webhook` });
    expect(await down.send('x', 'k')).toEqual({ ok: false, error: { kind: 'network', retryable: true, reason: 'Poke API unreachable' } });
    await down.close();
  });
});
