import { afterEach, describe, expect, it, vi } from 'vitest';
import { startServer, type RunningServer } from '../../src/server.ts';
import { framePool } from '../../src/streams/frame-copies.ts';
import { EAGER_PAYLOAD_BYTES, FrameReader } from '../../src/transport/websocket-frames.ts';
import { testConfig } from '../helpers/config.ts';
import { RawWebSocket } from '../helpers/raw-ws.ts';
import { frame, GlassesClient } from '../helpers/ws-client.ts';
import { digest, Op, pattern, rawFrame } from '../helpers/ws-frames.ts';

// Finding 10: a peer whose network dropped sends nothing, not even a FIN. The server pings
// every VISION_PING_INTERVAL_S and cuts a peer silent for VISION_PEER_TIMEOUT_S.

let server: RunningServer | undefined;
const raws: RawWebSocket[] = [];
afterEach(async () => {
  for (const raw of raws.splice(0)) raw.destroy();
  await server?.close();
  server = undefined;
});

const FAST = { VISION_PING_INTERVAL_S: '0.1', VISION_PEER_TIMEOUT_S: '0.4' };
const sessions = async () => ((await (await fetch(`${server!.url}/debug/actors`)).json()) as { sessions: unknown[] }).sessions;

describe('dead peers (finding 10)', () => {
  it('cuts a peer that stops answering and reaps its session', async () => {
    server = await startServer({ config: testConfig(FAST) });
    const silent = await RawWebSocket.open(server.url);
    raws.push(silent);
    silent.stopReading(); // a dead peer reads nothing and answers no ping
    expect(await sessions()).toHaveLength(1);
    await expect.poll(sessions, { timeout: 3_000 }).toEqual([]);
    silent.socket.resume();
    await expect.poll(() => silent.closed).toBe(true);
  });

  it('keeps a peer that answers pings, even one that sends no frame', async () => {
    server = await startServer({ config: testConfig(FAST) });
    const client = await GlassesClient.connect(server.url); // answers pings, as every WebSocket client does
    let pings = 0;
    client.ws.on('ping', () => (pings += 1));
    await expect.poll(() => pings, { timeout: 3_000 }).toBeGreaterThanOrEqual(5);
    expect(client.closeCode).toBeUndefined();
    client.send(frame(3));
    await client.until(() => client.acks.length === 1);
    await client.close();
  });
});

describe('a message that never ends', () => {
  it('is cut VISION_PEER_TIMEOUT_S after it began, however many pings its peer sends meanwhile', async () => {
    server = await startServer({ config: testConfig(FAST) });
    const stalled = await RawWebSocket.open(server.url);
    raws.push(stalled);
    // One fragment of a binary message (FIN clear), then only pings: the peer is alive, the message never ends.
    stalled.socket.write(rawFrame(Op.binary, pattern(1_000, 1), { fin: false }));
    const pinging = setInterval(() => stalled.socket.write(rawFrame(Op.ping, 'alive')), 50);
    try {
      expect(await sessions()).toHaveLength(1);
      await expect.poll(sessions, { timeout: 3_000 }).toEqual([]);
      await expect.poll(() => stalled.closed).toBe(true);
    } finally {
      clearInterval(pinging);
    }
  });

  it('holds 64 KiB for a frame that announces 4 MiB and sends a few bytes, and grows as the bytes come', () => {
    const take = vi.spyOn(framePool, 'take'); // calls through: the sizes the reader asked the pool for
    const taken = () => take.mock.calls.map(([size]) => size);
    const messages: string[] = [];
    const events = { binary: (b: Uint8Array) => messages.push(digest(b)), text() {}, ping() {}, close() {}, fail: (code: number) => messages.push(`fail ${code}`) };
    try {
      const reader = new FrameReader(4 * 1024 * 1024, events);
      const header = rawFrame(Op.binary, new Uint8Array(0), { announcedLength: 4 * 1024 * 1024 });
      reader.feed(header, 0, header.length);
      reader.feed(new Uint8Array(10), 0, 10);
      expect(Math.max(...taken())).toBe(EAGER_PAYLOAD_BYTES);

      // Whole messages still arrive intact through the growth: one 3 MiB frame in 1,000-byte reads,
      // and a message of three 1 MiB fragments in 65,536-byte reads.
      const whole = pattern(3 * 1024 * 1024, 7);
      const fragments = [0, 1, 2].map((i) => pattern(1024 * 1024, 10 + i));
      const other = new FrameReader(4 * 1024 * 1024, events);
      const oneFrame = rawFrame(Op.binary, whole);
      for (let at = 0; at < oneFrame.length; at += 1_000) other.feed(oneFrame, at, Math.min(oneFrame.length, at + 1_000));
      const fragmented = Buffer.concat([
        rawFrame(Op.binary, fragments[0]!, { fin: false }),
        rawFrame(Op.continuation, fragments[1]!, { fin: false }),
        rawFrame(Op.continuation, fragments[2]!),
      ]);
      for (let at = 0; at < fragmented.length; at += 65_536) other.feed(fragmented, at, Math.min(fragmented.length, at + 65_536));
      expect(messages).toEqual([digest(whole), digest(Buffer.concat(fragments))]);
    } finally {
      take.mockRestore();
    }
  });
});
