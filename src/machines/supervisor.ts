import { assign, enqueueActions, setup, stopChild, type ActorRefFrom, type DoneActorEvent } from 'xstate';
import { tickerMachine, type TickerInput } from './intervention.ts';
import { pokeSenderMachine, type PokeSenderInput } from './poke.ts';
import { sessionMachine, type SessionInput } from './session.ts';

export interface SupervisorInput {
  poke?: PokeSenderInput;
  ticker?: TickerInput;
  /** Restarts of a permanent child before the supervisor gives up on it (stays `failed`). */
  maxRestarts?: number;
}

export interface SupervisorContext {
  sessionsOpened: number;
  sessionsClosed: number;
  poke: PokeSenderInput;
  ticker: TickerInput;
  maxRestarts: number;
  pokeRestarts: number;
  tickerRestarts: number;
}

/** The system id of the intervention ticker. */
export const INTERVENTION_TICKER = 'interventionTicker';

export type PokeSenderRef = ActorRefFrom<typeof pokeSenderMachine>;

/** The system id of the Poke sender: `system.get(POKE_SENDER)`. */
export const POKE_SENDER = 'pokeSender';

export type SupervisorEvent =
  | { type: 'session.open'; input: SessionInput }
  | { type: 'session.close'; sessionId: string }
  | { type: 'shutdown' }
  | DoneActorEvent<unknown, string>;

export type SessionRef = ActorRefFrom<typeof sessionMachine>;

/** The system id under which a session actor is registered: `system.get(sessionSystemId(id))`. */
export const sessionSystemId = (sessionId: string): string => `session:${sessionId}`;

/**
 * The root actor (SPEC §6): one per server. Sessions are `temporary` children in
 * OTP terms: spawned per connection, never restarted, stopped when they finish.
 */
export const supervisorMachine = setup({
  types: {} as { input: SupervisorInput; context: SupervisorContext; events: SupervisorEvent },
  actors: { session: sessionMachine, pokeSender: pokeSenderMachine, ticker: tickerMachine },
  actions: {
    spawnSession: assign({
      sessionsOpened: ({ context, spawn }, params: { input: SessionInput }) => {
        spawn('session', {
          id: params.input.sessionId,
          systemId: sessionSystemId(params.input.sessionId),
          input: params.input,
        });
        return context.sessionsOpened + 1;
      },
    }),
    // A close for a session already gone (double close, reaped) is a no-op.
    closeSession: enqueueActions(({ system, enqueue }, params: { sessionId: string }) => {
      const session = system.get(sessionSystemId(params.sessionId)) as SessionRef | undefined;
      if (session) enqueue.sendTo(session, { type: 'connection.closed' });
    }),
    reapSession: stopChild((_, params: { actorId: string }) => params.actorId),
    countClosed: assign({ sessionsClosed: ({ context }) => context.sessionsClosed + 1 }),
    countPokeRestart: assign({ pokeRestarts: ({ context }) => context.pokeRestarts + 1 }),
    countTickerRestart: assign({ tickerRestarts: ({ context }) => context.tickerRestarts + 1 }),
  },
  guards: {
    pokeRestartsLeft: ({ context }) => context.pokeRestarts < context.maxRestarts,
    tickerRestartsLeft: ({ context }) => context.tickerRestarts < context.maxRestarts,
  },
  delays: { restartBackoff: 1_000 },
}).createMachine({
  id: 'supervisor',
  context: ({ input }) => ({
    sessionsOpened: 0,
    sessionsClosed: 0,
    poke: input?.poke ?? {},
    ticker: input?.ticker ?? { enabled: false, periodMs: 60_000, nudgeCooldownMs: 300_000 },
    maxRestarts: input?.maxRestarts ?? 5,
    pokeRestarts: 0,
    tickerRestarts: 0,
  }),
  on: {
    'session.close': {
      actions: { type: 'closeSession', params: ({ event }) => ({ sessionId: event.sessionId }) },
    },
    // A session that reached `closed` reports done; it is removed from the tree.
    'xstate.done.actor.*': {
      actions: [{ type: 'reapSession', params: ({ event }) => ({ actorId: event.actorId }) }, 'countClosed'],
    },
  },
  type: 'parallel',
  states: {
    sessions: {
      initial: 'running',
      states: {
        running: {
          on: {
            'session.open': {
              actions: { type: 'spawnSession', params: ({ event }) => ({ input: event.input }) },
            },
            shutdown: 'stopping',
          },
        },
        // No new sessions; open ones finish their closing and are reaped.
        stopping: {},
      },
    },
    // The Poke sender is `permanent`: restarted after a crash, within a budget.
    poke: {
      initial: 'running',
      states: {
        running: {
          invoke: {
            id: POKE_SENDER,
            systemId: POKE_SENDER,
            src: 'pokeSender',
            input: ({ context }) => context.poke,
            onError: [{ guard: 'pokeRestartsLeft', target: 'restarting', actions: 'countPokeRestart' }, { target: 'failed' }],
          },
        },
        restarting: { after: { restartBackoff: 'running' } },
        failed: {},
      },
    },
    // The intervention ticker is `permanent` too.
    interventions: {
      initial: 'running',
      states: {
        running: {
          invoke: {
            id: INTERVENTION_TICKER,
            systemId: INTERVENTION_TICKER,
            src: 'ticker',
            input: ({ context }) => context.ticker,
            onError: [
              { guard: 'tickerRestartsLeft', target: 'restarting', actions: 'countTickerRestart' },
              { target: 'failed' },
            ],
          },
        },
        restarting: { after: { restartBackoff: 'running' } },
        failed: {},
      },
    },
  },
});
