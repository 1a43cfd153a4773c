import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SERVER_NODE_FLAGS } from '../src/node-flags.ts';

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');

describe('production Node flags', () => {
  it('npm start runs the server with them', () => {
    const start = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.start!;
    expect(start).toBe(`node ${SERVER_NODE_FLAGS.join(' ')} dist/src/main.js`);
  });

  it('the container runs the server with them', () => {
    const cmd = /^CMD (\[.*\])$/m.exec(read('Dockerfile'))?.[1];
    expect(JSON.parse(cmd!)).toEqual(['node', ...SERVER_NODE_FLAGS, 'dist/src/main.js']);
  });

  it('engines names the Node the project brings and is tested on, and this is it (finding 18)', () => {
    const pkg = JSON.parse(read('package.json')) as { engines: { node: string }; devDependencies: { node: string } };
    expect(pkg.engines.node).toBe(pkg.devDependencies.node);
    const [major, minor, patch] = process.versions.node.split('.').map(Number) as [number, number, number];
    const [wMajor, wMinor, wPatch] = pkg.engines.node.replace('^', '').split('.').map(Number) as [number, number, number];
    expect(major).toBe(wMajor);
    expect(minor * 1_000 + patch).toBeGreaterThanOrEqual(wMinor * 1_000 + wPatch);
  });
});
