import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { createServer } from 'node:http';
import { startServer, type RunningServer } from '../src/server.ts';
import { acceptWebSocket } from '../src/transport/websocket.ts';
import { testConfig } from './helpers/config.ts';
import { frame, GlassesClient } from './helpers/ws-client.ts';
import { closePayload, Op, rawFrame, serverFrames } from './helpers/ws-frames.ts';

/** The WebSocket protocol itself (RFC 6455) at `/vision/stream`, over loopback. */

let server: RunningServer | undefined;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await server?.close();
  server = undefined;
});

async function start() {
  server = await startServer({ config: testConfig() });
  return server;
}

// The example key and answer of RFC 6455 §1.3.
const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const ACCEPT = 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

/** A hand-driven client: writes a handshake (and whatever follows it) and collects every byte back. */
class RawClient {
  readonly socket: Socket;
  received = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  readonly ended: Promise<void>;

  constructor(url: string, request: string, after: Buffer = Buffer.alloc(0)) {
    const { port } = new URL(url);
    this.socket = connect(Number(port), '127.0.0.1');
    sockets.push(this.socket);
    this.socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      for (const waiter of this.waiters.splice(0)) waiter();
    });
    this.ended = new Promise((resolve) => this.socket.once('end', resolve));
    this.socket.on('error', () => undefined);
    this.socket.write(Buffer.concat([Buffer.from(request, 'latin1'), after]));
  }

  static handshake(headers: Record<string, string> = {}, method = 'GET'): string {
    const all = { Host: 'localhost', Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': KEY, 'Sec-WebSocket-Version': '13', ...headers };
    const lines = Object.entries(all).filter(([, v]) => v !== '').map(([k, v]) => `${k}: ${v}\r\n`);
    return `${method} /vision/stream HTTP/1.1\r\n${lines.join('')}\r\n`;
  }

  /** The HTTP response head and the bytes after it, once the head is complete. */
  split(): { head: string; rest: Buffer } | undefined {
    const end = this.received.indexOf('\r\n\r\n');
    if (end < 0) return undefined;
    return { head: this.received.subarray(0, end).toString('latin1'), rest: this.received.subarray(end + 4) };
  }

  until<T>(pick: (head: string, frames: ReturnType<typeof serverFrames>) => T | undefined): Promise<T> {
    return new Promise((resolve) => {
      const check = () => {
        const parts = this.split();
        const value = parts && pick(parts.head, serverFrames(parts.rest));
        if (value !== undefined) resolve(value);
        else this.waiters.push(check);
      };
      check();
    });
  }

  response(): Promise<string> {
    return this.until((head) => head);
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }
}

describe('WebSocket handshake', () => {
  it('answers a valid handshake with 101 and the accept key of RFC 6455', async () => {
    const { url } = await start();
    const client = new RawClient(url, RawClient.handshake());
    const head = await client.response();
    expect(head.split('\r\n')).toEqual([
      'HTTP/1.1 101 Switching Protocols',
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Accept: ${ACCEPT}`,
    ]);
  });

  it.each([
    ['a missing key', { 'Sec-WebSocket-Key': '' }, 'GET', 400, 'Missing or invalid Sec-WebSocket-Key header'],
    ['a malformed key', { 'Sec-WebSocket-Key': 'short' }, 'GET', 400, 'Missing or invalid Sec-WebSocket-Key header'],
    ['an unsupported version', { 'Sec-WebSocket-Version': '12' }, 'GET', 400, 'Missing or invalid Sec-WebSocket-Version header'],
    ['a method other than GET', {}, 'POST', 405, 'Invalid HTTP method'],
    // RFC 6455 §4.1: a list of unique tokens.
    ['subprotocols not separated by commas', { 'Sec-WebSocket-Protocol': 'chat superchat' }, 'GET', 400, 'Invalid Sec-WebSocket-Protocol header'],
    ['a subprotocol that is not a token', { 'Sec-WebSocket-Protocol': 'ch@t' }, 'GET', 400, 'Invalid Sec-WebSocket-Protocol header'],
    ['an empty subprotocol header', { 'Sec-WebSocket-Protocol': ' ' }, 'GET', 400, 'Invalid Sec-WebSocket-Protocol header'],
    ['an empty subprotocol in the list', { 'Sec-WebSocket-Protocol': 'chat,,other' }, 'GET', 400, 'Invalid Sec-WebSocket-Protocol header'],
    ['a subprotocol offered twice', { 'Sec-WebSocket-Protocol': 'chat, chat' }, 'GET', 400, 'Invalid Sec-WebSocket-Protocol header'],
  ])('refuses %s', async (_what, headers, method, status, message) => {
    const { url } = await start();
    const client = new RawClient(url, RawClient.handshake(headers, method));
    await client.ended;
    const { head, rest } = client.split()!;
    expect(head).toMatch(new RegExp(`^HTTP/1.1 ${status} `));
    if (status === 400) expect(head).toContain('Sec-WebSocket-Version: 13, 8');
    expect(rest.toString()).toBe(message);
  });

  it('selects no subprotocol it does not speak (none unless VISION_SUBPROTOCOLS names some)', async () => {
    const { url } = await start();
    const client = new RawClient(url, RawClient.handshake({ 'Sec-WebSocket-Protocol': 'foresight.v1, other' }));
    const head = await client.response();
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).not.toMatch(/sec-websocket-protocol/i);
  });

  it('selects the first offered subprotocol that VISION_SUBPROTOCOLS names', async () => {
    server = await startServer({ config: testConfig({ VISION_SUBPROTOCOLS: 'foresight.v2, foresight.v1' }) });
    const ws = new WebSocket(`${server.url.replace('http', 'ws')}/vision/stream`, ['other', 'foresight.v1', 'foresight.v2']);
    const glasses = new GlassesClient(ws);
    await glasses.opened;
    expect(ws.protocol).toBe('foresight.v1');
    await glasses.close();
  });

  it('selects the first offered subprotocol that the server speaks', async () => {
    const http = createServer();
    http.on('upgrade', (req, socket, head) => {
      socket.on('error', () => undefined);
      acceptWebSocket(req, socket, head, { maxMessageBytes: 1024, protocols: ['v2', 'v1'] })?.start({ binary() {}, text() {}, close() {} });
    });
    await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(http.address() as { port: number }).port}`;
    const client = new RawClient(url, RawClient.handshake({ 'Sec-WebSocket-Protocol': 'v0, v1, v2' }));
    expect((await client.response()).split('\r\n')).toContain('Sec-WebSocket-Protocol: v1');
    client.socket.destroy();
    http.closeAllConnections();
    await new Promise((resolve) => http.close(resolve));
  });

  it('reads a frame sent in the same packet as the handshake', async () => {
    const { url } = await start();
    const client = new RawClient(url, RawClient.handshake(), rawFrame(Op.binary, frame(300)));
    const ack = await client.until((_head, frames) => frames[0]?.payload.toString());
    expect(JSON.parse(ack)).toEqual({ frame: 1, bytes: 300 });
  });
});

describe('WebSocket frames', () => {
  it('answers a ping with a pong carrying the same payload', async () => {
    const { url } = await start();
    const client = await GlassesClient.connect(url);
    const pong = new Promise<Buffer>((resolve) => client.ws.once('pong', resolve));
    client.ws.ping(Buffer.from('are you there'));
    expect((await pong).toString()).toBe('are you there');
    await client.close();
  });

  it('echoes the close code and reason of a client that closes', async () => {
    const { url } = await start();
    const client = await GlassesClient.connect(url);
    client.ws.close(4000, 'bye');
    expect(await client.closed).toBe(4000);
    expect(client.closeReason).toBe('bye');
  });

  it('acks a fragmented message once, with its whole size', async () => {
    const { url } = await start();
    const client = await GlassesClient.connect(url);
    client.ws.send(frame(5_000), { fin: false });
    client.ws.send(frame(7_000), { fin: true });
    client.send(frame(10));
    await client.untilAcks(2);
    expect(client.acks).toEqual([{ frame: 1, bytes: 12_000 }, { frame: 2, bytes: 10 }]);
    await client.close();
  });

  it('closes with 1002 and ends the connection on an unmasked frame', async () => {
    const { url } = await start();
    const client = new RawClient(url, RawClient.handshake(), rawFrame(Op.binary, 'x', { unmasked: true }));
    const close = await client.until((_head, frames) => frames.find((f) => f.opcode === Op.close));
    expect(close.payload).toEqual(closePayload(1002));
    await client.ended;
  });

  it('closes with 1007 on a text message that is not UTF-8', async () => {
    const { url } = await start();
    const client = await GlassesClient.connect(url);
    client.ws.send(frame(10));
    await client.untilAcks(1);
    // ws validates what it sends, so the bad text goes out on the raw socket.
    (client.ws as unknown as { _socket: Socket })._socket.write(rawFrame(Op.text, Buffer.from([0xc3, 0x28])));
    expect(await client.closed).toBe(1007);
  });
});
