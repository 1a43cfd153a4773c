import { readdirSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChildServer } from '../helpers/child-server.ts';
import { GlassesClient } from '../helpers/ws-client.ts';

// Input that used to end the process, sent over raw sockets to the real server in a
// process of its own. Each test ends by checking the process is alive and serves a client.

let server: ChildServer;
beforeAll(async () => {
  server = await ChildServer.start({ MAGIC_WORD: 'word' });
});
afterAll(() => server.stop());

/** Sends raw bytes and collects what comes back until the server closes the connection. */
function exchange(bytes: string | Buffer): Promise<string> {
  return new Promise((resolve) => {
    let answer = '';
    const socket = connect(server.port, '127.0.0.1', () => socket.write(bytes));
    socket.on('data', (data) => (answer += data.toString('latin1')));
    socket.on('error', () => resolve(answer));
    socket.on('close', () => resolve(answer));
  });
}

async function servesAFreshClient(): Promise<void> {
  expect(server.alive).toBe(true);
  const health = await fetch(`${server.url}/health`);
  expect(health.status).toBe(200);
  const client = await GlassesClient.connect(server.url, { headers: { 'x-magic-word': 'word' } });
  client.send(new Uint8Array([1, 2, 3]));
  await client.until(() => client.acks.length === 1);
  client.ws.close();
}

describe('input that ended the process (findings 1 and 2)', () => {
  it('answers 400 to an upgrade whose target is not a URL (`GET //[`)', async () => {
    const answer = await exchange('GET //[ HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(answer.endsWith('{"detail":"bad request"}')).toBe(true);
    await servesAFreshClient();
  });

  it('answers 400 to a plain request whose target is not a URL', async () => {
    const answer = await exchange('GET //[ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(answer.endsWith('{"detail":"bad request"}')).toBe(true);
    await servesAFreshClient();
  });

  it('survives clients that reset the connection right after each kind of refused upgrade', async () => {
    const refused = [
      'GET /nope HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', // 404
      'GET /vision/stream HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', // 403
      'GET /vision/stream?magic_word=word HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: nope\r\n\r\n', // 400
      'POST /vision/stream?magic_word=word HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n', // 405
      'GET //[ HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n', // 400
    ];
    const cycles: Array<Promise<void>> = [];
    for (let i = 0; i < 400; i++) {
      cycles.push(
        new Promise<void>((resolve) => {
          const socket: Socket = connect(server.port, '127.0.0.1', () => {
            socket.write(refused[i % refused.length] as string);
            socket.resetAndDestroy();
          });
          socket.on('error', () => undefined);
          socket.on('close', () => resolve());
        }),
      );
      if (i % 50 === 49) await Promise.all(cycles.splice(0));
    }
    await Promise.all(cycles);
    await servesAFreshClient();
  });

  it('closes a refused upgrade whatever the peer does: one that never sends its FIN holds no descriptor', async () => {
    const descriptors = () => readdirSync(`/proc/${server.child.pid}/fd`).length;
    const before = descriptors();
    const peers: Socket[] = [];
    const answered: Array<Promise<unknown>> = [];
    for (let i = 0; i < 200; i++) {
      const peer = connect({ port: server.port, host: '127.0.0.1', allowHalfOpen: true });
      peer.on('error', () => undefined);
      answered.push(new Promise((resolve) => peer.once('data', resolve)));
      peer.write(`GET ${i % 2 ? '/nope' : '/vision/stream'} HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
      peers.push(peer); // answered 404 or 403, and never ended from this side
    }
    await Promise.all(answered);
    await expect.poll(descriptors, { timeout: 5_000 }).toBeLessThan(before + 20);
    for (const peer of peers) peer.destroy();
    await servesAFreshClient();
  });
});
