import { randomUUID } from 'node:crypto';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import type { Actor } from 'xstate';
import { z } from 'zod';
import type { Config } from '../config.ts';
import type { PokeOutcome } from '../machines/poke.ts';
import { encodingRefusal, readJsonBody } from '../schemas/uploads.ts';
import { POKE_SENDER, type PokeSenderRef, type supervisorMachine } from '../machines/supervisor.ts';

/** The longest a `/poke/send` caller waits for the sender's answer (retries included). */
export const POKE_REQUEST_TIMEOUT_MS = 120_000;

export const pokeSendSchema = z.object({ message: z.string().min(1).max(1600) });

/** Request/response over actor messages: `poke.send` in, the matching `poke.result` out. */
export interface PokeRequests {
  send(message: string, apiKey: string): Promise<PokeOutcome>;
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

  return {
    send(message, apiKey) {
      const ref = sender();
      if (!ref) return Promise.resolve({ ok: false, reason: 'Poke sender unavailable', attempts: 0 });
      const requestId = randomUUID();
      return new Promise<PokeOutcome>((resolve) => {
        const timer = setTimeout(() => settle({ ok: false, reason: 'Poke request timed out', attempts: 0 }), POKE_REQUEST_TIMEOUT_MS);
        const settle = (outcome: PokeOutcome) => {
          clearTimeout(timer);
          pending.delete(requestId);
          resolve(outcome);
        };
        pending.set(requestId, settle);
        ref.send({ type: 'poke.send', requestId, message, apiKey });
      });
    },
  };
}

interface ValidationDetail {
  loc: Array<string | number>;
  msg: string;
  type: string;
}

const invalid = (detail: ValidationDetail[]) => ({ detail });

const unreadableBody = (msg: string) => invalid([{ loc: ['body'], msg, type: 'json_invalid' }]);

/**
 * `POST /poke/send` (SPEC §3): body checked (422; a non-UTF-8 charset 415, as
 * for uploads), key from the header or the env (500), sent through the actor (502).
 */
export function pokeRoute(config: Config, pokes: PokeRequests): Array<RequestHandler | ErrorRequestHandler> {
  const raw = express.raw({ limit: '16kb', type: () => true, inflate: false });
  const unreadable: ErrorRequestHandler = (error: { type?: string }, req, res, next) => {
    if (error.type === 'entity.too.large') {
      res.status(422).json(unreadableBody('body too large'));
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
    pokes.send(parsed.data.message, apiKey).then((outcome) => {
      if (outcome.ok) res.json({ success: true, data: outcome.data });
      else if (outcome.queueFull) res.status(503).json({ detail: outcome.reason });
      else res.status(502).json({ detail: outcome.reason });
    }, next);
  };
  return [raw, unreadable, handler];
}
