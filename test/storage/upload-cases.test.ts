import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSqliteStore } from '../../src/adapters/sqlite-store.ts';
import type { Store } from '../../src/adapters/store.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { bodyBytes, caseHeaders, UPLOAD_CASES } from '../fixtures/uploads/cases.ts';
import { testConfig } from '../helpers/config.ts';

// The shared table of upload cases over HTTP against the Node server; the Worker's tests
// run the same table in workerd (worker/test/upload-cases.test.ts).

let server: RunningServer;
let store: Store;
beforeAll(async () => {
  store = openSqliteStore({ path: ':memory:', now: () => 1_700_000_000_000 });
  server = await startServer({ config: testConfig({ MAGIC_WORD: 'w' }), store });
});
afterAll(async () => {
  await server.close();
  store.close();
});

describe('uploads: the table shared with the Worker (SPEC §3, §8)', () => {
  it.each(UPLOAD_CASES.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const res = await fetch(`${server.url}${c.path}`, {
      method: 'POST',
      body: bodyBytes(c),
      headers: { 'x-magic-word': 'w', ...caseHeaders(c) },
    });
    expect(res.status).toBe(c.status);
    const body = await res.json();
    if ('error' in c.expect) {
      expect(body).toEqual({ success: false, error: c.expect.error });
      return;
    }
    const { stored } = c.expect;
    expect(body).toEqual({ success: true, windowId: stored.windowId, storedAt: 1_700_000_000_000 });
    const { biometrics, captions } = await store.windowsSince(0);
    const rows: Array<{ windowId: string }> = c.path === '/biometrics/upload' ? biometrics : captions;
    const row = rows.find((r) => r.windowId === stored.windowId);
    expect(row).toMatchObject(stored);
    expect(Object.keys((row as { features?: object }).features ?? {})).toEqual(
      Object.keys((stored as { features?: object }).features ?? {}),
    );
  });
});
