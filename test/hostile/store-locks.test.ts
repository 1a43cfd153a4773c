import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server.ts';
import { ChildServer } from '../helpers/child-server.ts';
import { testConfig } from '../helpers/config.ts';
import { frame, GlassesClient } from '../helpers/ws-client.ts';

// Finding 9: another process holding the database's write lock (an operator's sqlite3 shell,
// a backup) froze every ack while an upload waited for it, and the upload then got a 500.

const dirs: string[] = [];
const holders: DatabaseSync[] = [];
let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const db of holders.splice(0)) if (db.isOpen) db.close();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
const tempDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'foresight-locks-'));
  dirs.push(dir);
  return dir;
};
/** A second connection, as an operator's shell would be, holding the write lock. */
function holdWriteLock(path: string): DatabaseSync {
  const db = new DatabaseSync(path);
  holders.push(db);
  db.exec('BEGIN IMMEDIATE');
  return db;
}

const biometric = (windowId: string) => JSON.stringify({ windowId, timestamp: 1, durationMs: 60_000, hrMean: 70 });

describe('store locks (finding 9)', () => {
  it('keeps acking while an upload waits for a lock, then answers the upload 503, not 500', async () => {
    const path = join(tempDir(), 'foresight.db');
    server = await startServer({ config: testConfig({ DATABASE_PATH: path, DATABASE_BUSY_TIMEOUT_MS: '1500' }) });
    const lock = holdWriteLock(path);
    const order: string[] = [];
    const upload = fetch(`${server.url}/biometrics/upload`, { method: 'POST', body: biometric('locked-1') }).then(async (res) => {
      order.push('upload answered');
      return { status: res.status, body: await res.json() };
    });
    const client = await GlassesClient.connect(server.url);
    for (let i = 1; i <= 20; i++) {
      client.send(frame(100));
      await client.until(() => client.acks.length === i);
    }
    order.push('20 acks');
    expect(await upload).toEqual({ status: 503, body: { success: false, error: 'storage unavailable' } });
    expect(order).toEqual(['20 acks', 'upload answered']);
    lock.exec('ROLLBACK');
    const after = await fetch(`${server.url}/biometrics/upload`, { method: 'POST', body: biometric('locked-2') });
    expect(after.status).toBe(200);
    await client.close();
  });

  it('says in one line why it cannot open the database at start: a folder that cannot be made', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'not-a-folder'), 'x');
    const path = join(dir, 'not-a-folder', 'foresight.db');
    const started = await ChildServer.start({ DATABASE_PATH: path }).catch((error: Error) => error.message);
    const lines = String(started).split('\n').slice(1).filter((line) => line.trim() !== '');
    expect(lines).toEqual([expect.stringMatching(new RegExp(`^cannot start: cannot open the database at ${path}: .*(ENOTDIR|EEXIST|not a directory)`))]);
  });

  it('says in one line why it cannot open the database at start: a file another process holds locked', async () => {
    const path = join(tempDir(), 'foresight.db');
    holdWriteLock(path);
    const message = await ChildServer.start({ DATABASE_PATH: path, DATABASE_BUSY_TIMEOUT_MS: '200' }).catch((error: Error) => error.message);
    const lines = String(message).split('\n').slice(1).filter((line) => line.trim() !== '');
    expect(lines).toEqual([`cannot start: cannot open the database at ${path}: database is locked`]);
  });
});

describe('the transport needs Node internals (finding 18)', () => {
  it('refuses to start, saying why, on a Node that cannot hand a socket handle over', async () => {
    await expect(startServer({ config: testConfig(), handleOf: () => undefined })).rejects.toThrow(
      /^this Node \(v[\d.]+\) cannot hand a socket's handle to the WebSocket transport/,
    );
  });
});
