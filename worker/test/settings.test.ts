import { describe, expect, it } from 'vitest';
import { containerEnv } from '../src/container.ts';
import { ConfigError, settingsOf, type Env } from '../src/env.ts';
import { MAGIC_WORD_ERROR, MAGIC_WORDS } from '../../test/fixtures/magic-words.ts';

// Finding 14: one rule for MAGIC_WORD in both runtimes (the server's test runs the same words).

const env = (word: string) => ({ MAGIC_WORD: word }) as unknown as Env;

describe('MAGIC_WORD in the Worker', () => {
  it.each(MAGIC_WORDS.map((w) => [w.why, w] as const))('%s', (_why, { word, valid }) => {
    if (valid) {
      expect(settingsOf(env(word)).MAGIC_WORD).toBe(word);
      // The container gets the very word the Worker checks: never a trimmed copy.
      expect(containerEnv(env(word)).MAGIC_WORD).toBe(word);
    } else {
      expect(() => settingsOf(env(word))).toThrow(new ConfigError(`invalid configuration: ${MAGIC_WORD_ERROR}`));
    }
  });

  it('treats an empty MAGIC_WORD as unset', () => {
    expect(settingsOf(env('')).MAGIC_WORD).toBeUndefined();
  });
});
