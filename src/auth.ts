import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { z } from 'zod';

/**
 * The one rule for `MAGIC_WORD`, on the server and the Worker alike (finding
 * 14): 1 to 256 visible ASCII characters (no space, nothing else). Such a word
 * survives an HTTP header unchanged (a header's surrounding spaces are dropped
 * and its bytes are read as Latin-1) and a query string; any other word could
 * never match, or would leave the routes open. Only an empty value means unset.
 */
export const magicWordSchema = z
  .string()
  .optional()
  .transform((value, ctx) => {
    if (value === undefined || value === '') return undefined;
    if (/^[\x21-\x7e]{1,256}$/.test(value)) return value;
    ctx.addIssue({ code: 'custom', message: 'must be 1 to 256 visible ASCII characters, without spaces (empty: unset)' });
    return z.NEVER;
  });

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
