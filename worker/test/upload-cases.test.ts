import { describe, expect, it } from 'vitest';
import { d1Store } from '../src/d1-store.ts';
import { bodyBytes, caseHeaders, UPLOAD_CASES } from '../../test/fixtures/uploads/cases.ts';
import { call, testEnv } from './helpers.ts';

// The shared table of upload cases against the Worker and a real D1; the Node server's
// tests run the same table (test/storage/upload-cases.test.ts).

describe('uploads: the table shared with the Node server (SPEC §8)', () => {
  it.each(UPLOAD_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const before = Date.now();
    const res = await call(c.path, { method: 'POST', body: bodyBytes(c), headers: caseHeaders(c) });
    expect(res.status).toBe(c.status);
    const body = (await res.json()) as Record<string, unknown>;
    if ('error' in c.expect) {
      expect(body).toEqual({ success: false, error: c.expect.error });
      return;
    }
    const { stored } = c.expect;
    expect(body).toEqual({ success: true, windowId: stored.windowId, storedAt: expect.any(Number) });
    expect(body.storedAt).toBeGreaterThanOrEqual(before);
    const { biometrics, captions } = await d1Store(testEnv.DB).windowsSince(0);
    const rows: Array<{ windowId: string }> = c.path === '/biometrics/upload' ? biometrics : captions;
    const row = rows.find((r) => r.windowId === stored.windowId);
    expect(row).toMatchObject(stored);
    expect(Object.keys((row as { features?: object }).features ?? {})).toEqual(
      Object.keys((stored as { features?: object }).features ?? {}),
    );
  });
});
