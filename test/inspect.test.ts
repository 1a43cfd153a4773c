import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocketServer } from 'ws';
import { redact } from '../src/adapters/inspect.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { FakeInference } from './fakes/inference.ts';
import { testConfig } from './helpers/config.ts';
import { frame, GlassesClient } from './helpers/ws-client.ts';

let server: RunningServer | undefined;
let relay: WebSocketServer | undefined;
afterEach(async () => {
  await server?.close();
  await new Promise<void>((resolve) => (relay ? relay.close(() => resolve()) : resolve()));
  server = undefined;
  relay = undefined;
});

describe('Stately inspection (SPEC §11)', () => {
  it('reports actor and snapshot events of a streaming session, without frame bytes or secrets', async () => {
    // A loopback WebSocket server stands in for the inspector relay and keeps every message.
    relay = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    const messages: string[] = [];
    relay.on('connection', (ws) => ws.on('message', (data) => messages.push(String(data))));
    await new Promise<void>((resolve) => relay!.once('listening', () => resolve()));
    const relayUrl = `ws://127.0.0.1:${(relay.address() as AddressInfo).port}`;

    server = await startServer({
      config: testConfig({
        VISION_CHUNK_SECONDS: '0.001',
        MAGIC_WORD: 'magic-secret-1',
        POKE_API_KEY: 'poke-secret-2',
        OPENAI_API_KEY: 'sk-secret-3',
        MODAL_TOKEN_ID: 'ak-secret-4',
        MODAL_TOKEN_SECRET: 'as-secret-5',
      }),
      inference: new FakeInference({ auto: () => undefined }),
      inspectorRelayUrl: relayUrl,
    });
    // The connection brings its own Modal pair: it travels in the session's input.
    const client = await GlassesClient.connect(server.url, {
      headers: { 'x-magic-word': 'magic-secret-1', 'x-modal-token-id': 'ak-secret-6', 'x-modal-token-secret': 'as-secret-7' },
    });
    // 0x5a5a… frames: their bytes would show up as runs of 90 in JSON.
    await client.sendUntil((a) => a.caption !== undefined, 64);
    client.send(frame(64, 0x5a));
    await client.untilAcks(client.acks.length + 1);
    const [sessionId] = server.connections().keys();
    await client.close();
    await vi.waitFor(
      () => {
        expect(messages.some((m) => m.includes('window.ready'))).toBe(true);
        expect(messages.some((m) => m.includes('@xstate.snapshot'))).toBe(true);
      },
      { timeout: 5_000 },
    );

    const events = messages.map((m) => JSON.parse(m) as { type: string });
    expect(events.some((e) => e.type === '@xstate.actor' && JSON.stringify(e).includes(sessionId!))).toBe(true);
    expect(events.some((e) => e.type === '@xstate.snapshot')).toBe(true);
    const all = messages.join('\n');
    expect(all).toContain('"bytes":64');
    expect(all).not.toMatch(/(90,){8}/);
    expect(all).toContain('"tokenSecret":"[redacted]"');
    expect(all).not.toMatch(/magic-secret-1|poke-secret-2|sk-secret-3|ak-secret-4|as-secret-5|ak-secret-6|as-secret-7/);
  });
});

describe('redact', () => {
  it('summarises bytes, hides secrets by key, tags class instances', () => {
    class Handle {}
    expect(
      redact({
        frames: [Buffer.alloc(3), new Uint8Array(5)],
        apiKey: 'k',
        headers: { 'x-poke-api-key': 'k', 'x-magic-word': 'w', authorization: 'Bearer k' },
        tokenSecret: 's',
        tokensGenerated: 7,
        handle: new Handle(),
        error: new Error('boom'),
        nested: { deeper: { list: [1, 'two'] } },
      }),
    ).toEqual({
      frames: [{ bytes: 3 }, { bytes: 5 }],
      apiKey: '[redacted]',
      headers: { 'x-poke-api-key': '[redacted]', 'x-magic-word': '[redacted]', authorization: '[redacted]' },
      tokenSecret: '[redacted]',
      tokensGenerated: 7,
      handle: '[Handle]',
      error: { error: 'boom' },
      nested: { deeper: { list: [1, 'two'] } },
    });
  });
});
