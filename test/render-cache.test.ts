import { describe, expect, it } from 'vitest';
import { renderedAtMostEvery } from '../src/render-cache.ts';

describe('renderedAtMostEvery', () => {
  it('shares a render in flight, reuses it for cacheMs after it ends, and retries at once after a failure', async () => {
    let t = 0;
    let renders = 0;
    let fail = false;
    const render = renderedAtMostEvery(
      1000,
      async () => {
        renders++;
        if (fail) throw new Error('render failed');
        return renders;
      },
      () => t,
    );
    const [a, b] = await Promise.all([render(), render()]);
    expect([a, b, renders]).toEqual([1, 1, 1]);
    t = 999;
    expect(await render()).toBe(1);
    t = 1000;
    expect(await render()).toBe(2);
    fail = true;
    t = 5000;
    await expect(render()).rejects.toThrow('render failed');
    fail = false;
    expect(await render()).toBe(4);
  });

  it('with cacheMs 0 renders on every call that finds none in flight', async () => {
    let renders = 0;
    const render = renderedAtMostEvery(0, async () => ++renders, () => 0);
    expect(await render()).toBe(1);
    expect(await render()).toBe(2);
  });
});
