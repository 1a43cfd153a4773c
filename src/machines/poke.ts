import { assign, enqueueActions, fromPromise, setup, type DoneActorEvent } from 'xstate';
import type { PokeClient, PokeError } from '../adapters/poke.ts';
import type { Result } from '../result.ts';

export interface PokeRequest {
  requestId: string;
  message: string;
  apiKey: string;
}

/** What the sender answers a request with: the upstream JSON, or why it failed. */
export type PokeOutcome =
  | { ok: true; data: unknown; attempts: number }
  | {
      ok: false;
      reason: string;
      status?: number;
      attempts: number;
      queueFull?: boolean;
      /** Cancelled (the requester gave up): no attempt went out after that, and none will. */
      cancelled?: boolean;
      /** Cancelled because the server is stopping. */
      shuttingDown?: boolean;
    };

export interface PokeRetryPolicy {
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_POKE_RETRY: PokeRetryPolicy = { maxAttempts: 4, baseDelayMs: 500, maxDelayMs: 30_000 };

/** One attempt at delivering; resolves with the adapter's result, never rejects. */
export const postPokeActor = (client: PokeClient) =>
  fromPromise<Result<unknown, PokeError>, { message: string; apiKey: string }>(({ input, signal }) =>
    client.send(input.message, input.apiKey, signal),
  );

const notProvided = () => {
  throw new Error('poke actor "postPoke" was not provided');
};

interface DeliveryContext extends PokeRequest {
  policy: PokeRetryPolicy;
  /** The requester gave up: the attempt in flight is the last. */
  cancelled: boolean;
  attempts: number;
  lastError: PokeError | null;
  retryDelayMs: number;
  delivered: boolean;
  data: unknown;
  /** 0..1, for jitter; injected so tests are deterministic. */
  random: () => number;
}

/**
 * Delivers one message (SPEC §6): retries network errors, timeouts, 5xx and 429
 * with exponential backoff and jitter, honouring `Retry-After`; never retries
 * other 4xx. Its output is the outcome for the requester.
 */
export const deliveryMachine = setup({
  types: {} as {
    input: PokeRequest & { policy: PokeRetryPolicy; random?: () => number };
    context: DeliveryContext;
    output: PokeOutcome;
    events: { type: 'cancel' };
  },
  actors: { postPoke: fromPromise<Result<unknown, PokeError>, { message: string; apiKey: string }>(notProvided) },
  actions: {
    countAttempt: assign({ attempts: ({ context }) => context.attempts + 1 }),
    keepError: assign({
      lastError: (_, params: { error: PokeError }) => params.error,
      retryDelayMs: ({ context }, params: { error: PokeError }) => {
        const backoff = Math.min(context.policy.maxDelayMs, context.policy.baseDelayMs * 2 ** (context.attempts - 1));
        const jittered = backoff * (0.5 + context.random() / 2);
        // The server's word wins when it asks for longer.
        return Math.min(context.policy.maxDelayMs, Math.max(jittered, params.error.retryAfterMs ?? 0));
      },
    }),
  },
  guards: {
    delivered: (_, params: { result: Result<unknown, PokeError> }) => params.result.ok,
    worthRetrying: ({ context }, params: { result: Result<unknown, PokeError> }) =>
      !context.cancelled && !params.result.ok && params.result.error.retryable && context.attempts < context.policy.maxAttempts,
  },
  delays: { retryDelay: ({ context }) => context.retryDelayMs },
}).createMachine({
  id: 'pokeDelivery',
  context: ({ input }) => ({
    ...input,
    random: input.random ?? Math.random,
    attempts: 0,
    cancelled: false,
    lastError: null,
    retryDelayMs: 0,
    delivered: false,
    data: null,
  }),
  initial: 'sending',
  states: {
    sending: {
      entry: 'countAttempt',
      // An attempt under way is not called back (Poke may have it already): it is the last one.
      on: { cancel: { actions: assign({ cancelled: true }) } },
      invoke: {
        src: 'postPoke',
        input: ({ context }) => ({ message: context.message, apiKey: context.apiKey }),
        onDone: [
          {
            guard: { type: 'delivered', params: ({ event }) => ({ result: event.output }) },
            target: 'delivered',
            actions: assign({
              delivered: true,
              data: ({ event }) => (event.output.ok ? event.output.value : null),
            }),
          },
          {
            guard: { type: 'worthRetrying', params: ({ event }) => ({ result: event.output }) },
            target: 'waiting',
            actions: { type: 'keepError', params: ({ event }) => ({ error: (event.output as { error: PokeError }).error }) },
          },
          {
            target: 'failed',
            actions: { type: 'keepError', params: ({ event }) => ({ error: (event.output as { error: PokeError }).error }) },
          },
        ],
      },
    },
    waiting: {
      after: { retryDelay: 'sending' },
      on: { cancel: { target: 'failed', actions: assign({ cancelled: true }) } },
    },
    delivered: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }) => {
    if (context.delivered) return { ok: true, data: context.data, attempts: context.attempts };
    const error = context.lastError;
    return {
      ok: false,
      reason: error?.reason ?? 'Poke delivery failed',
      ...(error?.status === undefined ? {} : { status: error.status }),
      attempts: context.attempts,
      ...(context.cancelled ? { cancelled: true } : {}),
    };
  },
});

export interface PokeSenderInput {
  /** Deliveries running at once. */
  concurrency?: number;
  /** Requests waiting beyond those; one more is refused at once. */
  maxQueue?: number;
  policy?: PokeRetryPolicy;
  random?: () => number;
}

interface PokeSenderContext {
  concurrency: number;
  cancelled: number;
  maxQueue: number;
  policy: PokeRetryPolicy;
  random: (() => number) | undefined;
  queue: PokeRequest[];
  active: number;
  sent: number;
  failed: number;
  refused: number;
}

export type PokeSenderEvent = ({ type: 'poke.send' } & PokeRequest) | { type: 'poke.cancel'; requestId: string };

export type PokeSenderEmitted = { type: 'poke.result'; requestId: string; outcome: PokeOutcome };

/**
 * The Poke sender (SPEC §6), a `permanent` child of the supervisor: requests
 * come in as `poke.send` events and their outcome goes out as an emitted
 * `poke.result` with the same `requestId`. A bounded queue feeds at most
 * `concurrency` deliveries; a request that finds the queue full is refused at
 * once with an explicit outcome.
 */
export const pokeSenderMachine = setup({
  types: {} as {
    input: PokeSenderInput;
    context: PokeSenderContext;
    events: PokeSenderEvent | DoneActorEvent<PokeOutcome, string>;
    emitted: PokeSenderEmitted;
  },
  actors: { delivery: deliveryMachine },
  actions: {
    accept: enqueueActions(({ context, enqueue }, request: PokeRequest) => {
      if (context.active < context.concurrency) {
        enqueue.assign({ active: context.active + 1 });
        enqueue.spawnChild('delivery', {
          id: `delivery:${request.requestId}`,
          input: { ...request, policy: context.policy, ...(context.random ? { random: context.random } : {}) },
        });
      } else if (context.queue.length < context.maxQueue) {
        enqueue.assign({ queue: [...context.queue, request] });
      } else {
        enqueue.assign({ refused: context.refused + 1 });
        enqueue.emit({
          type: 'poke.result',
          requestId: request.requestId,
          outcome: { ok: false, reason: 'Poke queue full', attempts: 0, queueFull: true },
        });
      }
    }),
    // The requester gave up: a queued request is dropped unsent; a delivery sends no further attempt.
    cancel: enqueueActions(({ context, enqueue, self }, params: { requestId: string }) => {
      if (context.queue.some((r) => r.requestId === params.requestId)) {
        enqueue.assign({ queue: context.queue.filter((r) => r.requestId !== params.requestId), cancelled: context.cancelled + 1 });
        enqueue.emit({
          type: 'poke.result',
          requestId: params.requestId,
          outcome: { ok: false, reason: 'Poke request cancelled before it was sent', attempts: 0, cancelled: true },
        });
        return;
      }
      const delivery = self.getSnapshot().children[`delivery:${params.requestId}`];
      if (delivery) enqueue.sendTo(delivery, { type: 'cancel' });
    }),
    finish: enqueueActions(({ context, enqueue }, params: { actorId: string; outcome: PokeOutcome }) => {
      const requestId = params.actorId.slice('delivery:'.length);
      enqueue.stopChild(params.actorId);
      enqueue.emit({ type: 'poke.result', requestId, outcome: params.outcome });
      const [next, ...rest] = context.queue;
      const counts = params.outcome.ok
        ? { sent: context.sent + 1 }
        : params.outcome.cancelled
          ? { cancelled: context.cancelled + 1 }
          : { failed: context.failed + 1 };
      if (next) {
        enqueue.assign({ ...counts, queue: rest });
        enqueue.spawnChild('delivery', {
          id: `delivery:${next.requestId}`,
          input: { ...next, policy: context.policy, ...(context.random ? { random: context.random } : {}) },
        });
      } else {
        enqueue.assign({ ...counts, active: context.active - 1 });
      }
    }),
  },
}).createMachine({
  id: 'pokeSender',
  context: ({ input }) => ({
    concurrency: input.concurrency ?? 2,
    cancelled: 0,
    maxQueue: input.maxQueue ?? 100,
    policy: input.policy ?? DEFAULT_POKE_RETRY,
    random: input.random,
    queue: [],
    active: 0,
    sent: 0,
    failed: 0,
    refused: 0,
  }),
  on: {
    'poke.send': {
      actions: {
        type: 'accept',
        params: ({ event }) => ({ requestId: event.requestId, message: event.message, apiKey: event.apiKey }),
      },
    },
    'poke.cancel': { actions: { type: 'cancel', params: ({ event }) => ({ requestId: event.requestId }) } },
    'xstate.done.actor.*': {
      actions: { type: 'finish', params: ({ event }) => ({ actorId: event.actorId, outcome: event.output }) },
    },
  },
});

/** Provides the delivery's network step from a Poke client. */
export const pokeSenderWith = (client: PokeClient) =>
  pokeSenderMachine.provide({
    actors: { delivery: deliveryMachine.provide({ actors: { postPoke: postPokeActor(client) } }) },
  });

