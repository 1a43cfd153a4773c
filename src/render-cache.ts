/**
 * Renders at most once per `cacheMs`: callers in that window, and callers while a render is
 * under way, share its result. A scrape flood therefore costs one render a window, however
 * many sessions there are. `cacheMs` 0 still coalesces concurrent callers.
 */
export function renderedAtMostEvery<T>(cacheMs: number, render: () => Promise<T>, now: () => number = performance.now.bind(performance)) {
  let last: { at: number; value: Promise<T> } | undefined;
  return (): Promise<T> => {
    const t = now();
    if (last && t - last.at < cacheMs) return last.value;
    const value = render();
    const entry = { at: Number.POSITIVE_INFINITY, value };
    last = entry;
    // While the render runs, every caller shares it; once done, it is reused for cacheMs.
    value.then(
      () => (entry.at = now()),
      () => {
        if (last === entry) last = undefined;
      },
    );
    return value;
  };
}
