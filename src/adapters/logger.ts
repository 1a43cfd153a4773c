import { pino } from 'pino';

/** The logging role the rest of the code uses; pino satisfies it. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** Paths whose values never reach a log line. */
export const REDACTED_PATHS = [
  'magicWord',
  'apiKey',
  'tokenSecret',
  'tokenId',
  'headers.authorization',
  'headers["x-magic-word"]',
  'headers["x-poke-api-key"]',
  'headers["x-modal-token-id"]',
  'headers["x-modal-token-secret"]',
  '*.magicWord',
  '*.apiKey',
  '*.tokenSecret',
  '*.tokenId',
];

/** Structured JSON logs on stdout (or the given stream), secrets redacted. */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = { level, base: { service: 'foresight' }, redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
  return destination ? pino(options, destination) : pino(options);
}
