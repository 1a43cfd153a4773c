import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfig } from '../helpers/config.ts';
import { RawWebSocket } from '../helpers/raw-ws.ts';
import { Op, rawFrame } from '../helpers/ws-frames.ts';
import { frame, GlassesClient } from '../helpers/ws-client.ts';

// Peers that send without reading (finding 3) or flood tiny frames (finding 4), against the
// server over loopback. What the server queues for a peer is read from /metrics.

let server: RunningServer | undefined;
const raws: RawWebSocket[] = [];
afterEach(async () => {
  for (const raw of raws.splice(0)) raw.destroy();
  await server?.close();
  server = undefined;
});

async function start(env: Record<string, string>) {
  server = await startServer({ config: testConfig(env) });
  return server;
}

async function queued(of: 'sum' | 'max'): Promise<number> {
  const text = await (await fetch(`${server!.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`foresight_socket_queued_bytes{of="${of}"}`));
  return Number(line?.split(' ')[1]);
}

const NO_RATE_LIMIT = { VISION_MAX_MESSAGES_PER_S: '1000000000', VISION_MAX_BYTES_PER_S: '1000000000000' };
// One 64 KiB read of 1-byte text frames (7 bytes each) makes about 9,400 replies of 32 bytes.
const BOUND = 64 * 1024 + 320 * 1024;

describe('one bound on what the server queues for a peer, whatever the message (finding 3)', () => {
  it.each([
    ['1-byte text frames (each answered with an error)', rawFrame(Op.text, 'x')],
    ['pings (each answered with a pong)', rawFrame(Op.ping, 'p')],
    ['1-byte binary frames (each acked)', rawFrame(Op.binary, Buffer.from([1]))],
  ])('a peer that sends %s without reading stops being read', async (_what, message) => {
    await start(NO_RATE_LIMIT);
    const raw = await RawWebSocket.open(server!.url);
    raws.push(raw);
    raw.stopReading();
    const burst = Buffer.concat(Array.from({ length: 1024 }, () => message));
    const written = await raw.flood(burst, 16 * 1024 * 1024);
    // The server stopped reading: the peer's writes backed up long before 16 MiB.
    expect(written).toBeLessThan(16 * 1024 * 1024);
    // Once the server has read what it is going to read, what it holds for the peer is bounded.
    let last = -1;
    let now = await queued('max');
    for (let i = 0; i < 50 && now !== last; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      [last, now] = [now, await queued('max')];
    }
    expect(now).toBeLessThan(BOUND);
  });
});

describe('per-connection rate limits (finding 4)', () => {
  it.each([1, 100])('reads a peer flooding %i-byte frames no faster than its rate, and closes it with 1008 when it stays over', async (size) => {
    await start({ VISION_MAX_MESSAGES_PER_S: '500', VISION_RATE_LIMIT_CLOSE_S: '1' });
    const flooder = await RawWebSocket.open(server!.url);
    raws.push(flooder);
    const neighbour = await GlassesClient.connect(server!.url);
    const started = performance.now();
    const one = rawFrame(Op.binary, Buffer.alloc(size, 1));
    const burst = Buffer.concat(Array.from({ length: 1024 }, () => one));
    let written = 0;
    // Flood for 4 s at most; the server closes the flooder well before.
    while (!flooder.closed && flooder.closeCode() === undefined && performance.now() - started < 4_000) {
      written += (await flooder.flood(burst, burst.length * 64)) / one.length;
      neighbour.send(frame(10));
    }
    const seconds = (performance.now() - started) / 1000;
    expect(flooder.closeCode()).toBe(1008);
    // Read no faster than the burst, the rate, and one 64 KiB read's worth of frames (about 9,400).
    const read = flooder.lastAckedFrame();
    expect(read).toBeLessThan(500 + 500 * seconds + 9_400);
    expect(read).toBeLessThan(written / 4);
    // The neighbour was served all along.
    await neighbour.until(() => neighbour.acks.length > 0);
    expect(neighbour.closeCode).toBeUndefined();
    await neighbour.close();
  });

  it('leaves a client within its rate alone', async () => {
    await start({ VISION_MAX_MESSAGES_PER_S: '500', VISION_RATE_LIMIT_CLOSE_S: '1' });
    const client = await GlassesClient.connect(server!.url);
    for (let i = 0; i < 400; i++) client.send(frame(100));
    await client.until(() => client.acks.length === 400);
    expect(client.closeCode).toBeUndefined();
    await client.close();
  });
});

describe('a cap on connections', () => {
  it('answers 503 past VISION_MAX_CONNECTIONS, and takes one again once one has gone', async () => {
    await start({ VISION_MAX_CONNECTIONS: '2' });
    const a = await GlassesClient.connect(server!.url);
    await GlassesClient.connect(server!.url);
    await expect(GlassesClient.connect(server!.url)).rejects.toThrow('unexpected response 503');
    await a.close();
    await expect.poll(() => server!.connections().size).toBe(1);
    const c = await GlassesClient.connect(server!.url);
    c.send(frame(8));
    await c.until(() => c.acks.length === 1);
  });
});

