/**
 * The server cannot start, for a reason a person must fix (a database it
 * cannot open, a Node it cannot run on): `main.ts` prints the message as one
 * line on stderr and exits 1, without a stack trace.
 */
export class StartupError extends Error {
  override name = 'StartupError';
}
