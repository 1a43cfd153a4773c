import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/adapters/logger.ts';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfig } from '../helpers/config.ts';
import { RawWebSocket } from '../helpers/raw-ws.ts';

// Finding 17: one connection could make the server write tens of thousands of log lines in
// seconds. Warnings and errors of one kind are now written 20 per 10 s at most; the next
// line of the kind says how many were dropped.

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(JSON.parse(chunk.toString())), done()) });
  return { lines, sink };
}

describe('repeated log lines (finding 17)', () => {
  it('writes 20 lines of a kind per window, then says how many it dropped', () => {
    let now = 0;
    const { lines, sink } = capture();
    const logger = createLogger('info', sink, { now: () => now });
    for (let i = 0; i < 1_000; i++) logger.warn({ i }, 'same thing again');
    for (let i = 0; i < 5; i++) logger.info({ i }, 'not limited below warn');
    logger.error({}, 'another kind');
    expect(lines.filter((l) => l.msg === 'same thing again')).toHaveLength(20);
    expect(lines.filter((l) => l.msg === 'not limited below warn')).toHaveLength(5);
    expect(lines.filter((l) => l.msg === 'another kind')).toHaveLength(1);
    now = 10_000;
    logger.warn({ i: 1_000 }, 'same thing again');
    expect(lines.at(-1)).toMatchObject({ msg: 'same thing again', i: 1_000, suppressed: 980 });
  });

  it('keeps a stranger from flooding the log: 300 connections that each earn a warning', async () => {
    const { lines, sink } = capture();
    server = await startServer({ config: testConfig(), logger: createLogger('warn', sink) });
    for (let i = 0; i < 300; i++) {
      // App and class headers without a token pair are ignored, and said so in a warning.
      const raw = await RawWebSocket.open(server.url, { headers: { 'x-modal-app-name': 'elsewhere' } });
      raw.destroy();
    }
    const warned = lines.filter((l) => String(l.msg).startsWith('x-modal-app-name ignored'));
    expect(warned).toHaveLength(20);
  });
});
