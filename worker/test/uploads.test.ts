import { describe, expect, it } from 'vitest';
import { d1Store } from '../src/d1-store.ts';
import { call, postJson, rows, testEnv } from './helpers.ts';

const biometric = (windowId: string) => ({ windowId, timestamp: 1_700_000_000_000, durationMs: 60_000, qualityScore: 0.9, hr_mean: 71.5 });
const caption = (windowId: string) => ({ windowId, timestamp: 1_700_000_000_000, chunkStartS: 1, chunkEndS: 2, caption: 'A desk with a laptop.' });

describe('uploads to D1 (SPEC §8)', () => {
  it('stores a biometric window and answers with its id and time', async () => {
    const before = Date.now();
    const res = await postJson('/biometrics/upload', biometric('bio-1'));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { success: boolean; windowId: string; storedAt: number };
    expect(body).toMatchObject({ success: true, windowId: 'bio-1' });
    expect(body.storedAt).toBeGreaterThanOrEqual(before);
    const [row] = await rows<{ duration_ms: number; features: string }>('SELECT * FROM biometric_windows WHERE window_id = ?', 'bio-1');
    expect(row).toMatchObject({ duration_ms: 60_000 });
    expect(JSON.parse(row!.features)).toEqual({ hr_mean: 71.5 });
  });

  it('stores a caption window', async () => {
    const res = await postJson('/captions/upload', caption('cap-1'));
    expect(res.status).toBe(200);
    expect(await rows('SELECT caption FROM caption_windows WHERE window_id = ?', 'cap-1')).toEqual([{ caption: 'A desk with a laptop.' }]);
  });

  it('inserts a batch of captions in one D1 batch, a stored window id left as it was', async () => {
    const store = d1Store(testEnv.DB, () => 9_000);
    await store.insertCaptionWindow(caption('cap-b0'));
    expect(await store.insertCaptionWindows([caption('cap-b0'), caption('cap-b1')])).toEqual([
      { inserted: false, storedAt: 9_000 },
      { inserted: true, storedAt: 9_000 },
    ]);
    expect(await rows('SELECT window_id, created_at FROM caption_windows WHERE window_id LIKE ? ORDER BY id', 'cap-b%')).toEqual([
      { window_id: 'cap-b0', created_at: 9_000 },
      { window_id: 'cap-b1', created_at: 9_000 },
    ]);
    expect(await store.insertCaptionWindows([])).toEqual([]);
  });

  it('answers 200 to a duplicate and keeps one row', async () => {
    for (let i = 0; i < 2; i++) expect((await postJson('/captions/upload', caption('cap-dup'))).status).toBe(200);
    for (let i = 0; i < 2; i++) expect((await postJson('/biometrics/upload', biometric('bio-dup'))).status).toBe(200);
    expect(await rows('SELECT COUNT(*) AS n FROM caption_windows WHERE window_id = ?', 'cap-dup')).toEqual([{ n: 1 }]);
    expect(await rows('SELECT COUNT(*) AS n FROM biometric_windows WHERE window_id = ?', 'bio-dup')).toEqual([{ n: 1 }]);
  });

  it('answers 400 to a body over 256 KiB that declares no length, without reading it all', async () => {
    let pulled = 0;
    const chunk = new Uint8Array(64 * 1024).fill(0x20);
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        pulled++;
        if (pulled > 64) controller.close(); // 4 MiB at most, if nothing stopped reading
        else controller.enqueue(chunk);
      },
    });
    const res = await call('/captions/upload', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ success: false, error: 'body: larger than 262144 bytes' });
    expect(pulled).toBeLessThan(16);
  });

  it('stores nothing for a request without the magic word', async () => {
    const res = await call('/captions/upload', { method: 'POST', body: JSON.stringify(caption('cap-denied')), magic: null });
    expect(res.status).toBe(403);
    expect(await rows('SELECT * FROM caption_windows WHERE window_id = ?', 'cap-denied')).toEqual([]);
  });
});
