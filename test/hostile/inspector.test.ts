import { connect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { ChildServer } from '../helpers/child-server.ts';
import { GlassesClient, frame } from '../helpers/ws-client.ts';
import { Op, rawFrame } from '../helpers/ws-frames.ts';

// Finding 5: the Stately inspector relay (INSPECT=1), tried as a stranger would, against the
// real server in a process of its own.

let server: ChildServer;
beforeAll(async () => {
  server = await ChildServer.start({ HOST: '0.0.0.0', MAGIC_WORD: 'word', INSPECT: '1', INSPECT_PORT: '0' });
});
afterAll(() => server.stop());

const relay = () => new URL(server.inspectorUrl!);
const viewerUrl = (query = '?magic_word=word') => `ws://127.0.0.1:${relay().port}/${query}`;

function viewer(query?: string): Promise<{ ws: WebSocket; messages: string[] }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(viewerUrl(query));
    const messages: string[] = [];
    ws.on('message', (data) => messages.push(String(data)));
    ws.once('open', () => resolve({ ws, messages }));
    ws.once('unexpected-response', (_req, res) => reject(new Error(String(res.statusCode))));
    ws.once('error', reject);
  });
}

/** Opens a raw WebSocket to the relay and sends `bytes`; resolves with how it ended. */
function rawViewer(bytes: Buffer): Promise<string> {
  return new Promise((resolve) => {
    let answer = Buffer.alloc(0);
    const socket = connect(Number(relay().port), '127.0.0.1', () => {
      socket.write(
        'GET /?magic_word=word HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
          'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
      );
      socket.write(bytes);
    });
    socket.on('data', (data) => (answer = Buffer.concat([answer, data])));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(answer.toString('latin1')));
  });
}

async function stillServes(): Promise<void> {
  expect(server.alive).toBe(true);
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
  expect((await fetch(`${server.inspectorUrl}/?magic_word=word`)).status).toBe(200);
}

describe('the inspector relay (finding 5)', () => {
  it('listens on loopback even when the server listens on every interface', async () => {
    expect(relay().hostname).toBe('127.0.0.1');
    const outside = Object.values(networkInterfaces())
      .flat()
      .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
    if (outside) {
      const refused = await fetch(`http://${outside}:${relay().port}/?magic_word=word`).then(
        () => false,
        () => true,
      );
      expect(refused).toBe(true);
    }
  });

  it('wants the magic word for the page and for the event stream', async () => {
    expect((await fetch(`${server.inspectorUrl}/`)).status).toBe(403);
    expect((await fetch(`${server.inspectorUrl}/?magic_word=nope`)).status).toBe(403);
    const page = await fetch(`${server.inspectorUrl}/?magic_word=word`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('https://stately.ai/inspect');
    await expect(viewer('')).rejects.toThrow('403');
  });

  it('sends redacted events to viewers and relays nothing a viewer sends', async () => {
    const a = await viewer();
    const b = await viewer();
    const glasses = await GlassesClient.connect(server.url, { headers: { 'x-magic-word': 'word' } });
    glasses.send(frame(16));
    await glasses.until(() => glasses.acks.length === 1);
    await expect.poll(() => b.messages.some((m) => m.includes('@xstate.snapshot'))).toBe(true);
    const seen = b.messages.length;
    const injected = JSON.stringify({ type: '@xstate.event', sessionId: 'x:0', event: { type: 'poke.send', message: 'injected' } });
    a.ws.send(injected);
    glasses.send(frame(16));
    await glasses.until(() => glasses.acks.length === 2);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(b.messages.slice(seen).some((m) => m.includes('injected'))).toBe(false);
    expect(b.messages.join('\n')).not.toContain('word');
    a.ws.close();
    b.ws.close();
    await glasses.close();
  });

  it('closes a viewer that sends a 3-byte unmasked frame, and goes on', async () => {
    const ended = await rawViewer(Buffer.from([0x81, 0x01, 0x61]));
    expect(ended).toMatch(/^HTTP\/1\.1 101 /);
    await stillServes();
  });

  it('closes a viewer whose message is over 4 KiB with 1009, without reading 100 MiB of it', async () => {
    const ended = await rawViewer(rawFrame(Op.text, 'x'.repeat(16), { announcedLength: 100 * 1024 * 1024 }));
    expect(ended).toContain(String.fromCharCode(0x03, 0xf1)); // 1009 in the close frame
    await stillServes();
  });

  it('answers garbage requests and resets without going down', async () => {
    for (let i = 0; i < 100; i++) {
      await new Promise<void>((resolve) => {
        const socket = connect(Number(relay().port), '127.0.0.1', () => {
          socket.write('GET //[ HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
          socket.resetAndDestroy();
        });
        socket.on('error', () => undefined);
        socket.on('close', () => resolve());
      });
    }
    await stillServes();
  });
});

describe('inspector viewers that vanish', () => {
  let fast: ChildServer;
  beforeAll(async () => {
    fast = await ChildServer.start({ INSPECT: '1', INSPECT_PORT: '0', VISION_PING_INTERVAL_S: '0.1', VISION_PEER_TIMEOUT_S: '0.3' });
  });
  afterAll(() => fast.stop());

  it('are cut once silent past VISION_PEER_TIMEOUT_S, freeing their slot; a viewer that answers pings stays', async () => {
    const port = Number(new URL(fast.inspectorUrl!).port);
    const live = new WebSocket(`ws://127.0.0.1:${port}/`);
    let pings = 0;
    live.on('ping', () => pings++);
    await new Promise((resolve, reject) => live.once('open', resolve).once('error', reject));
    // A viewer whose machine is gone: the handshake is done, then nothing ever answers.
    const gone = await new Promise<{ at: number; answer: string }>((resolve) => {
      let answer = '';
      const socket = connect(port, '127.0.0.1', () =>
        socket.write(
          'GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n',
        ),
      );
      const started = performance.now();
      socket.on('data', (data) => (answer += data.toString('latin1')));
      socket.on('error', () => undefined);
      socket.on('close', () => resolve({ at: performance.now() - started, answer }));
    });
    expect(gone.answer).toMatch(/^HTTP\/1\.1 101 /);
    expect(gone.at).toBeGreaterThanOrEqual(250);
    expect(gone.at).toBeLessThan(5_000);
    await expect.poll(() => pings).toBeGreaterThanOrEqual(8);
    expect(live.readyState).toBe(WebSocket.OPEN);
    live.close();
  });
});
