import { createHash, randomUUID } from 'node:crypto';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import type { Actor } from 'xstate';
import { z } from 'zod';
import type { Config } from '../config.ts';
import type { PokeOutcome } from '../machines/poke.ts';
import { encodingRefusal, readJsonBody } from '../schemas/uploads.ts';
import { POKE_SENDER, type PokeSenderRef, type supervisorMachine } from '../machines/supervisor.ts';

/** The longest a `/poke/send` caller waits for the sender's answer (retries included), by default. */
export const POKE_REQUEST_TIMEOUT_MS = 120_000;

/**
 * Once a request has been cancelled, how long its attempt in flight (bounded by
 * the Poke client's own timeout, 10 s) is waited for before it is answered anyway.
 */
const CANCEL_GRACE_MS = 15_000;

export const pokeSendSchema = z.object({ message: z.string().min(1).max(1600) });

/** Request/response over actor messages: `poke.send` in, the matching `poke.result` out. */
export interface PokeRequests {
  /**
   * Sends a message; resolves with its outcome. A request not delivered within
   * `timeoutMs` is cancelled: it is never sent after that (an attempt already
   * under way is waited for and reported as it ended).
   */
  send(message: string, apiKey: string, timeoutMs?: number): Promise<PokeOutcome>;
  /**
   * Cancels every request (shutdown): resolves once each has its outcome. One
   * never sent is answered `server shutting down` (503); one whose attempt is
   * still under way after `graceMs` is answered 502 (Poke may have it).
   */
  cancelAll(graceMs: number): Promise<void>;
}

export function pokeRequests(supervisor: Actor<typeof supervisorMachine>): PokeRequests {
  const pending = new Map<string, (outcome: PokeOutcome) => void>();
  let listening: PokeSenderRef | undefined;
  let subscription: { unsubscribe(): void } | undefined;

  // The sender may have been restarted since the last request: follow the live one.
  const sender = (): PokeSenderRef | undefined => {
    const ref = supervisor.system.get(POKE_SENDER) as PokeSenderRef | undefined;
    if (ref !== listening) {
      subscription?.unsubscribe();
      listening = ref;
      subscription = ref?.on('poke.result', ({ requestId, outcome }) => {
        pending.get(requestId)?.(outcome);
      });
    }
    return ref;
  };

  const gaveUp = (reason: string): PokeOutcome => ({ ok: false, reason, attempts: 0, cancelled: true });
  /** At shutdown: never sent (503, may be tried again), or cut after an attempt (502: Poke may have it). */
  const stopping = (attempts: number): PokeOutcome => ({
    ok: false,
    reason: attempts === 0 ? 'server shutting down' : 'server shutting down while the message was being sent',
    attempts,
    cancelled: true,
    shuttingDown: true,
  });

  return {
    send(message, apiKey, timeoutMs = POKE_REQUEST_TIMEOUT_MS) {
      const ref = sender();
      if (!ref) return Promise.resolve({ ok: false, reason: 'Poke sender unavailable', attempts: 0 });
      const requestId = randomUUID();
      return new Promise<PokeOutcome>((resolve) => {
        let timer = setTimeout(() => {
          // Too long: nothing more goes out for it; what is under way ends, and is told as it ended.
          ref.send({ type: 'poke.cancel', requestId });
          timer = setTimeout(() => settle(gaveUp('Poke request timed out')), CANCEL_GRACE_MS);
        }, timeoutMs);
        const settle = (outcome: PokeOutcome) => {
          clearTimeout(timer);
          pending.delete(requestId);
          resolve(outcome.ok || !outcome.cancelled || outcome.shuttingDown ? outcome : { ...outcome, reason: 'Poke request timed out' });
        };
        pending.set(requestId, settle);
        ref.send({ type: 'poke.send', requestId, message, apiKey });
      });
    },
    async cancelAll(graceMs) {
      const ref = sender();
      const waiting = [...pending.entries()];
      if (waiting.length === 0) return;
      const answered = Promise.all(
        waiting.map(
          ([requestId, settle]) =>
            new Promise<void>((done) => {
              pending.set(requestId, (outcome) => {
                settle(outcome.ok || !outcome.cancelled || outcome.shuttingDown ? outcome : stopping(outcome.attempts));
                done();
              });
              ref?.send({ type: 'poke.cancel', requestId });
            }),
        ),
      );
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([answered, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
      clearTimeout(timer);
      // Still waiting after the grace: an attempt is under way (queued and backoff ones answer at
      // once), and Poke may have the message. A 502, not a 503 that invites a retry.
      for (const settle of pending.values()) settle(stopping(1));
    },
  };
}

/**
 * `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header): the first
 * outcome of a request is kept for a day, under the key and the Poke key it was
 * sent with (its scope); a retry with the same key and body gets that outcome
 * again instead of a second SMS (409 while the first is still under way, 422
 * with another body). Outcomes of requests that never went out (queue full,
 * no key) are not kept.
 *
 * Bounds: `maxKeys` per scope and `maxScopes` scopes. A full scope forgets its
 * oldest answered key; a key still under way is never forgotten (a scope full
 * of them refuses new keys), and one caller's keys never push out another's:
 * a new scope past `maxScopes` replaces the least recently used scope with
 * nothing under way.
 */
export class IdempotencyKeys {
  private readonly scopes = new Map<string, Map<string, { fingerprint: string; answer?: { status: number; body: unknown }; expiresAt: number }>>();
  private readonly ttlMs: number;
  private readonly maxKeys: number;
  private readonly maxScopes: number;
  private readonly now: () => number;

  constructor(options: { ttlMs?: number; maxKeys?: number; maxScopes?: number; now?: () => number } = {}) {
    this.ttlMs = options.ttlMs ?? 24 * 60 * 60 * 1000;
    this.maxKeys = options.maxKeys ?? 1_000;
    this.maxScopes = options.maxScopes ?? 1_000;
    this.now = options.now ?? Date.now;
  }

  /** Where a request with this key stands: new (now claimed), in progress, a mismatch, answered, or no room. */
  begin(
    scope: string,
    key: string,
    fingerprint: string,
  ): { state: 'new' } | { state: 'in-progress' } | { state: 'mismatch' } | { state: 'answered'; status: number; body: unknown } | { state: 'full' } {
    const keys = this.scopeFor(scope);
    if (!keys) return { state: 'full' };
    const now = this.now();
    for (const [id, entry] of keys) {
      if (entry.expiresAt > now) break; // insertion order is expiry order
      if (entry.answer) keys.delete(id);
    }
    const entry = keys.get(key);
    if (entry) {
      if (entry.fingerprint !== fingerprint) return { state: 'mismatch' };
      if (!entry.answer) return { state: 'in-progress' };
      return { state: 'answered', ...entry.answer };
    }
    if (keys.size >= this.maxKeys) {
      const oldestAnswered = [...keys].find(([, e]) => e.answer !== undefined)?.[0];
      if (oldestAnswered === undefined) return { state: 'full' };
      keys.delete(oldestAnswered);
    }
    keys.set(key, { fingerprint, expiresAt: now + this.ttlMs });
    return { state: 'new' };
  }

  /** Keeps the answer of a claimed key; `keep: false` forgets the key (the request never went out). */
  finish(scope: string, key: string, answer: { status: number; body: unknown }, keep: boolean): void {
    const keys = this.scopes.get(scope);
    if (!keys) return;
    if (!keep) keys.delete(key);
    else {
      const entry = keys.get(key);
      if (entry) entry.answer = answer;
    }
  }

  /** The scope's keys, most recently used last; a new scope may replace an idle one. */
  private scopeFor(scope: string) {
    let keys = this.scopes.get(scope);
    if (keys) {
      this.scopes.delete(scope);
      this.scopes.set(scope, keys);
      return keys;
    }
    if (this.scopes.size >= this.maxScopes) {
      const idle = [...this.scopes].find(([, k]) => [...k.values()].every((e) => e.answer !== undefined))?.[0];
      if (idle === undefined) return undefined;
      this.scopes.delete(idle);
    }
    keys = new Map();
    this.scopes.set(scope, keys);
    return keys;
  }
}

/** An idempotency key: 1 to 255 visible ASCII characters (quoted as a structured-field string, or bare). */
const idempotencyKeySchema = z
  .string()
  .transform((v) => v.trim().replace(/^"(.*)"$/, '$1'))
  .pipe(z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/));

interface ValidationDetail {
  loc: Array<string | number>;
  msg: string;
  type: string;
}

const invalid = (detail: ValidationDetail[]) => ({ detail });

const unreadableBody = (msg: string) => invalid([{ loc: ['body'], msg, type: 'json_invalid' }]);

/** The longest `/poke/send` body read, in bytes (README limits). */
export const MAX_POKE_BODY_BYTES = 16 * 1024;

/**
 * `POST /poke/send` (SPEC §3): body checked (422; a non-UTF-8 charset 415, as
 * for uploads), key from the header or the env (500), sent through the actor (502).
 */
export function pokeRoute(
  config: Config,
  pokes: PokeRequests,
  options: { keys?: IdempotencyKeys; requestTimeoutMs?: number } = {},
): Array<RequestHandler | ErrorRequestHandler> {
  const keys = options.keys ?? new IdempotencyKeys();
  const requestTimeoutMs = options.requestTimeoutMs ?? POKE_REQUEST_TIMEOUT_MS;
  const limit = MAX_POKE_BODY_BYTES;
  const raw = express.raw({ limit, type: () => true, inflate: false });
  // A body declared over the limit is refused before any of it is read.
  const declared: RequestHandler = (req, res, next) => {
    if (Number(req.headers['content-length'] ?? 0) > limit) res.set('connection', 'close').status(422).json(unreadableBody('body too large'));
    else next();
  };
  const unreadable: ErrorRequestHandler = (error: { type?: string }, req, res, next) => {
    if (error.type === 'entity.too.large') {
      res.set('connection', 'close').status(422).json(unreadableBody('body too large'));
      return;
    }
    if (error.type === 'encoding.unsupported') {
      const refusal = encodingRefusal(req.headers['content-encoding']);
      res.status(415).json({ detail: refusal && !refusal.body.success ? refusal.body.error : 'content-encoding not supported' });
      return;
    }
    next(error);
  };
  const handler: RequestHandler = (req, res, next) => {
    const read = readJsonBody({ contentType: req.headers['content-type'], bytes: Buffer.isBuffer(req.body) ? req.body : new Uint8Array(0) });
    if (!read.ok) {
      const { status, body } = read.answer;
      const error = body.success ? '' : body.error;
      if (status === 415) res.status(415).json({ detail: error });
      else res.status(422).json(unreadableBody(read.reason === 'not-json' ? 'invalid JSON' : error.replace(/^body: /, '')));
      return;
    }
    const parsed = pokeSendSchema.safeParse(read.value);
    if (!parsed.success) {
      res.status(422).json(
        invalid(parsed.error.issues.map((i) => ({ loc: ['body', ...i.path.map((p) => (typeof p === 'symbol' ? String(p) : p))], msg: i.message, type: i.code }))),
      );
      return;
    }
    const header = req.headers['x-poke-api-key'];
    const apiKey = (typeof header === 'string' && header.trim() !== '' ? header : undefined) ?? config.poke.apiKey;
    if (apiKey === undefined) {
      res.status(500).json({ detail: 'Poke API key not configured' });
      return;
    }
    const keyHeader = req.headers['idempotency-key'];
    let key: string | undefined;
    if (keyHeader !== undefined) {
      const parsedKey = idempotencyKeySchema.safeParse(Array.isArray(keyHeader) ? keyHeader.join(',') : keyHeader);
      if (!parsedKey.success) {
        res.status(400).json({ detail: 'Idempotency-Key: 1 to 255 visible ASCII characters' });
        return;
      }
      key = parsedKey.data;
    }
    const scope = createHash('sha256').update(apiKey).digest('base64url');
    const fingerprint = createHash('sha256').update(parsed.data.message).digest('base64url');
    if (key !== undefined) {
      const seen = keys.begin(scope, key, fingerprint);
      if (seen.state === 'in-progress') {
        res.status(409).json({ detail: 'a request with this Idempotency-Key is still in progress' });
        return;
      }
      if (seen.state === 'mismatch') {
        res.status(422).json({ detail: 'this Idempotency-Key was used with another message' });
        return;
      }
      if (seen.state === 'answered') {
        res.status(seen.status).set('idempotent-replayed', 'true').json(seen.body);
        return;
      }
      if (seen.state === 'full') {
        res.status(503).json({ detail: 'too many Idempotency-Keys under way' });
        return;
      }
    }
    pokes.send(parsed.data.message, apiKey, requestTimeoutMs).then((outcome) => {
      const answer = outcome.ok
        ? { status: 200, body: { success: true, data: outcome.data } }
        : outcome.queueFull || (outcome.shuttingDown && outcome.attempts === 0)
          ? { status: 503, body: { detail: outcome.reason } }
          : outcome.cancelled && outcome.attempts === 0
            ? { status: 504, body: { detail: `${outcome.reason}: not sent` } }
            : { status: 502, body: { detail: outcome.reason } };
      // A request that never went out (queue full, or cancelled before any attempt) may be tried again.
      const neverSent = !outcome.ok && (outcome.queueFull === true || (outcome.cancelled === true && outcome.attempts === 0));
      if (key !== undefined) keys.finish(scope, key, answer, !neverSent);
      res.status(answer.status).json(answer.body);
    }, next);
  };
  return [declared, raw, unreadable, handler];
}
