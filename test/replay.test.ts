import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { framesFromFolder, replay } from '../scripts/replay.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { FakeInference } from './fakes/inference.ts';
import { testConfig } from './helpers/config.ts';

let server: RunningServer | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('npm run replay (SPEC §11)', () => {
  it('streams frames to an in-process server, prints captions as they come and the right summary', async () => {
    server = await startServer({
      config: testConfig({ VISION_CHUNK_SECONDS: '0.05', MAGIC_WORD: 'w' }),
      inference: new FakeInference({ auto: () => undefined }),
    });
    const lines: string[] = [];
    const frames = Array.from({ length: 40 }, (_, i) => Buffer.alloc(500 + i, i));
    const summary = await replay({ url: server.url, fps: 200, magicWord: 'w', frames, write: (l) => lines.push(l) });
    const captionLines = lines.filter((l) => /^\[\d+\.\ds\] .+-\d+ \(.*\): saw \d+ frames$/.test(l));
    expect(summary).toMatchObject({ frames: 40, acks: 40, inferenceErrors: 0 });
    expect(summary.captions).toBe(captionLines.length);
    expect(summary.captions).toBeGreaterThan(0);
    expect(summary.ackP99Ms).toBeGreaterThanOrEqual(summary.ackP50Ms);
    expect(lines.at(-1)).toBe(
      `frames 40 · acks 40 · captions ${summary.captions} · inference errors 0 · ack p50 ${summary.ackP50Ms.toFixed(2)} ms · p99 ${summary.ackP99Ms.toFixed(2)} ms`,
    );
  });

  it('prints inference errors and counts them', async () => {
    server = await startServer({
      config: testConfig({ VISION_CHUNK_SECONDS: '0.05' }),
      inference: new FakeInference({ openError: { kind: 'open-failed', message: 'app not deployed' } }),
    });
    const lines: string[] = [];
    const summary = await replay({ url: server.url, fps: 200, frames: [Buffer.alloc(10), Buffer.alloc(10)], write: (l) => lines.push(l) });
    expect(summary).toMatchObject({ frames: 2, acks: 2, captions: 0, inferenceErrors: 1 });
    expect(lines.some((l) => l.endsWith('inference error: model unavailable'))).toBe(true);
  });

  it('refuses clearly when the magic word is wrong', async () => {
    server = await startServer({ config: testConfig({ MAGIC_WORD: 'w' }) });
    await expect(replay({ url: server.url, fps: 10, frames: [], write: () => undefined })).rejects.toThrow(
      'server refused the stream: HTTP 403',
    );
  });

  it('reads the images of a folder in name order', () => {
    const dir = mkdtempSync(join(tmpdir(), 'replay-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'b.jpg'), 'B');
    writeFileSync(join(dir, 'a.jpg'), 'A');
    writeFileSync(join(dir, 'notes.txt'), 'x');
    expect(framesFromFolder(dir).map((f) => Buffer.from(f).toString())).toEqual(['A', 'B']);
  });
});
