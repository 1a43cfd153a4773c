import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { ChildServer } from '../helpers/child-server.ts';
import { frame, GlassesClient } from '../helpers/ws-client.ts';

// Finding 8: `kill -9` while streaming lost captions the client had already seen on acks
// (they waited up to 100 ms for a batch). A caption now rides on an ack once it is stored.

const ENTRY = fileURLToPath(new URL('../helpers/fake-model-main.ts', import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function streamThenKill(captionsBeforeKill: number): Promise<{ seen: string[]; stored: Set<string> }> {
  const dir = mkdtempSync(join(tmpdir(), 'foresight-kill-'));
  dirs.push(dir);
  const path = join(dir, 'foresight.db');
  const server = await ChildServer.start(
    { DATABASE_PATH: path, VISION_CHUNK_SECONDS: '0.02', FAKE_MODEL_MS: '5', VISION_MAX_MESSAGES_PER_S: '100000' },
    ENTRY,
  );
  const clients = await Promise.all(Array.from({ length: 4 }, () => GlassesClient.connect(server.url)));
  const seen = () => clients.flatMap((c) => c.acks.filter((a) => a.caption !== undefined).map((a) => a.window_id!));
  // Every client streams a frame as soon as its last one is acked, until the server is gone.
  const streams = clients.map(async (client) => {
    for (let i = 1; server.alive && i < 100_000; i++) {
      client.send(frame(2_000));
      try {
        await client.until(() => client.acks.length >= i);
      } catch {
        return; // the server is gone
      }
    }
  });
  while (seen().length < captionsBeforeKill && server.alive) await new Promise((resolve) => setTimeout(resolve, 5));
  await server.stop('SIGKILL');
  const seenWhenKilled = seen();
  await Promise.all(streams);
  const db = new DatabaseSync(path, { readOnly: true });
  const stored = new Set((db.prepare('SELECT window_id FROM caption_windows').all() as Array<{ window_id: string }>).map((r) => r.window_id));
  db.close();
  return { seen: seenWhenKilled, stored };
}

describe('kill -9 (finding 8)', () => {
  it('loses no caption a client has seen, in three runs', async () => {
    for (const count of [60, 150, 250]) {
      const { seen, stored } = await streamThenKill(count);
      expect(seen.length).toBeGreaterThanOrEqual(count);
      expect(seen.filter((id) => !stored.has(id))).toEqual([]);
    }
  }, 60_000);
});
