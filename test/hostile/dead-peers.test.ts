import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfig } from '../helpers/config.ts';
import { RawWebSocket } from '../helpers/raw-ws.ts';
import { frame, GlassesClient } from '../helpers/ws-client.ts';

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
