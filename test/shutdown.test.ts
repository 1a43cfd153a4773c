import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, expect, it } from 'vitest';
import { frame, GlassesClient } from './helpers/ws-client.ts';

describe('graceful shutdown (SPEC §4)', () => {
  it.each(['SIGTERM', 'SIGINT'] as const)('on %s closes every session with 1001 and exits 0 within 10 s', async (signal) => {
    const child = spawn(process.execPath, ['src/main.ts'], {
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', VISION_CHUNK_SECONDS: '0.01', DATABASE_PATH: ':memory:' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const url = await new Promise<string>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout });
      lines.on('line', (line) => {
        const parsed = JSON.parse(line) as { msg?: string; url?: string };
        if (parsed.msg === 'ready' && parsed.url) resolve(parsed.url);
      });
      child.once('exit', () => reject(new Error('server exited before it was ready')));
    });

    const clients = await Promise.all([1, 2, 3].map(() => GlassesClient.connect(url)));
    for (const client of clients) for (let i = 0; i < 5; i++) client.send(frame(1000));
    await Promise.all(clients.map((c) => c.untilAcks(5)));

    const started = Date.now();
    child.kill(signal);
    const codes = await Promise.all(clients.map((c) => c.closed));
    const exitCode = await exited;
    expect(codes).toEqual([1001, 1001, 1001]);
    expect(exitCode).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
