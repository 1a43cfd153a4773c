import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

const digest = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

/** Compares secrets in constant time, whatever their lengths. */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(digest(given), digest(expected));
}

/** The magic word a request carries: `x-magic-word` header first, else `?magic_word=`. */
export function presentedMagicWord(headers: IncomingHttpHeaders, url: URL): string | undefined {
  const header = headers['x-magic-word'];
  if (typeof header === 'string') return header;
  return url.searchParams.get('magic_word') ?? undefined;
}

/** True when no magic word is configured, or the request presents the right one. */
export function isAuthorized(expected: string | undefined, headers: IncomingHttpHeaders, url: URL): boolean {
  if (expected === undefined) return true;
  const given = presentedMagicWord(headers, url);
  return given !== undefined && secretsEqual(given, expected);
}
