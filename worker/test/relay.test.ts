import { afterEach, describe, expect, it, vi } from 'vitest';
import { openStream, postJson, rows, testEnv, type Socket } from './helpers.ts';

afterEach(() => vi.restoreAllMocks());

const frame = (size: number) => new Uint8Array(size).fill(7);
const acks = (s: Socket) => s.messages.map((m) => JSON.parse(m) as Record<string, unknown>).filter((m) => 'frame' in m);
const captionRows = (windowId: string) => rows('SELECT window_id, caption, chunk_start_s, chunk_end_s, latency_ms, tokens_generated FROM caption_windows WHERE window_id = ?', windowId);

describe('WebSocket relay (SPEC §8)', () => {
  it('passes frames to the container and acks back in order', async () => {
    const socket = await openStream('?session=relay-a');
    for (const size of [10, 20, 30, 40]) socket.ws.send(frame(size));
    await socket.until(() => acks(socket).length === 4, '4 acks');
    expect(acks(socket).map((a) => [a.frame, a.bytes])).toEqual([[1, 10], [2, 20], [3, 30], [4, 40]]);
    expect(acks(socket)[1]).toMatchObject({ caption: 'caption 0', window_id: 'relay-a-0' });
    socket.ws.close(1000, 'done');
  });

  it('stores every caption that rides on an ack, keyed by window id', async () => {
    const socket = await openStream('?session=relay-b');
    for (let i = 0; i < 4; i++) socket.ws.send(frame(8));
    await socket.until(() => acks(socket).length === 4, '4 acks');
    await vi.waitFor(async () => expect(await rows("SELECT window_id FROM caption_windows WHERE window_id LIKE 'relay-b-%' ORDER BY window_id")).toHaveLength(2));
    expect(await captionRows('relay-b-1')).toEqual([
      { window_id: 'relay-b-1', caption: 'caption 1', chunk_start_s: 1, chunk_end_s: 1.9, latency_ms: 42, tokens_generated: 7 },
    ]);
    socket.ws.close(1000, 'done');
  });

  it('keeps one row when the container uploaded the caption too, before or after the relay', async () => {
    // The container's own upload (its caption sink POSTs /captions/upload) for window 0 comes first...
    await postJson('/captions/upload', { windowId: 'relay-c-0', timestamp: Date.now(), chunkStartS: 0, chunkEndS: 0.9, caption: 'caption 0' });
    const socket = await openStream('?session=relay-c');
    for (let i = 0; i < 4; i++) socket.ws.send(frame(8));
    await socket.until(() => acks(socket).length === 4, '4 acks');
    await vi.waitFor(async () => expect(await captionRows('relay-c-1')).toHaveLength(1));
    // ...and for window 1 it comes after the relay stored it.
    const late = await postJson('/captions/upload', { windowId: 'relay-c-1', timestamp: Date.now(), chunkStartS: 1, chunkEndS: 1.9, caption: 'caption 1' });
    expect(late.status).toBe(200);
    expect(await rows("SELECT window_id, COUNT(*) AS n FROM caption_windows WHERE window_id LIKE 'relay-c-%' GROUP BY window_id ORDER BY window_id")).toEqual([
      { window_id: 'relay-c-0', n: 1 },
      { window_id: 'relay-c-1', n: 1 },
    ]);
    socket.ws.close(1000, 'done');
  });

  it("propagates the container's close code to the client", async () => {
    const socket = await openStream('?session=relay-d');
    socket.ws.send('close:4001');
    expect(await socket.untilClosed()).toEqual({ code: 4001, reason: 'backend says bye' });
  });

  it("propagates the client's close code to the container", async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0.9); // pins the connection to instance-2
    const socket = await openStream('?session=relay-e');
    socket.ws.send(frame(4));
    await socket.until(() => acks(socket).length === 1, 'an ack');
    socket.ws.close(4002, 'wearer left');
    const backend = testEnv.BACKEND.get(testEnv.BACKEND.idFromName('instance-2'));
    await vi.waitFor(async () => expect(await backend.closes()).toContain(4002));
  });

  it("answers with the container's refusal when it does not upgrade", async () => {
    await expect(openStream('?refuse=1')).rejects.toThrow('upgrade answered 503');
  });

  it('adds no secret header to the upgrade it relays', async () => {
    const socket = await openStream('?echo=1');
    await socket.until(() => socket.messages.length === 1, 'the echo');
    const { headers } = JSON.parse(socket.messages[0]!) as { headers: Record<string, string> };
    expect(Object.keys(headers).filter((h) => h.startsWith('x-poke') || h.startsWith('x-modal'))).toEqual([]);
    socket.ws.close(1000, 'done');
  });
});
