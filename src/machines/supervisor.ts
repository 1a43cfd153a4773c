import { assign, enqueueActions, sendParent, setup, stopChild, type ActorRefFrom, type DoneActorEvent } from 'xstate';
import { tickerMachine, type TickerInput } from './intervention.ts';
import { pokeSenderMachine, type PokeSenderInput } from './poke.ts';
import { sessionMachine, type SessionInput } from './session.ts';

export interface SupervisorInput {
  poke?: PokeSenderInput;
  ticker?: TickerInput;
  /** Restarts of a permanent child before the supervisor gives up on it (stays `failed`). */
  maxRestarts?: number;
  /** Session groups the sessions are spread over (default 64); see `sessionGroupMachine`. */
  sessionGroups?: number;
}

export interface SupervisorContext {
  sessionGroups: SessionGroupRef[];
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
  | { type: 'session.reaped' }
  | { type: 'shutdown' };

export type SessionRef = ActorRefFrom<typeof sessionMachine>;

/** The system id under which a session actor is registered: `system.get(sessionSystemId(id))`. */
export const sessionSystemId = (sessionId: string): string => `session:${sessionId}`;

/** The group a session belongs to: FNV-1a of its id, modulo the number of groups. */
export function sessionGroupOf(sessionId: string, groups: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < sessionId.length; i++) {
    hash ^= sessionId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % groups;
}

export type SessionGroupEvent = { type: 'session.open'; input: SessionInput } | DoneActorEvent<unknown, string>;

/**
 * An intermediate supervisor of sessions (`temporary` children in OTP terms:
 * spawned per connection, never restarted, stopped when they finish), so the
 * root's children stay few. A machine's children live in its snapshot, which
 * is copied on every spawn and every stop: one parent of N sessions makes N
 * connections cost O(N²) to open and to close; G groups make it O(N²/G).
 */
export const sessionGroupMachine = setup({
  types: {} as { events: SessionGroupEvent },
  actors: { session: sessionMachine },
  actions: {
    spawnSession: enqueueActions(({ enqueue }, params: { input: SessionInput }) => {
      enqueue.spawnChild('session', {
        id: params.input.sessionId,
        systemId: sessionSystemId(params.input.sessionId),
        input: params.input,
      });
    }),
    reapSession: stopChild((_, params: { actorId: string }) => params.actorId),
    reportReaped: sendParent({ type: 'session.reaped' }),
  },
}).createMachine({
  id: 'sessionGroup',
  on: {
    'session.open': { actions: { type: 'spawnSession', params: ({ event }) => ({ input: event.input }) } },
    // A session that reached `closed` reports done; it is removed from the tree.
    'xstate.done.actor.*': {
      actions: [{ type: 'reapSession', params: ({ event }) => ({ actorId: event.actorId }) }, 'reportReaped'],
    },
  },
});

export type SessionGroupRef = ActorRefFrom<typeof sessionGroupMachine>;

/**
 * The root actor (SPEC §6): one per server. Sessions are spawned into session
 * groups (`sessionGroupMachine`), its permanent children, spread by a hash of
 * the session id; the root counts them and routes their events.
 */
export const supervisorMachine = setup({
  types: {} as { input: SupervisorInput; context: SupervisorContext; events: SupervisorEvent },
  actors: { sessionGroup: sessionGroupMachine, pokeSender: pokeSenderMachine, ticker: tickerMachine },
  actions: {
    openSession: enqueueActions(({ context, enqueue }, params: { input: SessionInput }) => {
      const group = context.sessionGroups[sessionGroupOf(params.input.sessionId, context.sessionGroups.length)];
      if (group) enqueue.sendTo(group, { type: 'session.open', input: params.input });
      enqueue.assign({ sessionsOpened: context.sessionsOpened + 1 });
    }),
    // A close for a session already gone (double close, reaped) is a no-op.
    closeSession: enqueueActions(({ system, enqueue }, params: { sessionId: string }) => {
      const session = system.get(sessionSystemId(params.sessionId)) as SessionRef | undefined;
      if (session) enqueue.sendTo(session, { type: 'connection.closed' });
    }),
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
  context: ({ input, spawn }) => ({
    sessionGroups: Array.from({ length: Math.max(1, input?.sessionGroups ?? 64) }, (_, i) =>
      spawn('sessionGroup', { id: `sessions-${i}`, systemId: `sessions-${i}` }),
    ),
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
    'session.reaped': { actions: 'countClosed' },
  },
  type: 'parallel',
  states: {
    sessions: {
      initial: 'running',
      states: {
        running: {
          on: {
            'session.open': {
              actions: { type: 'openSession', params: ({ event }) => ({ input: event.input }) },
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

/** The supervisor with its sessions, Poke sender and ticker provided (each optional). */
export function supervisorWith(actors: { session?: typeof sessionMachine; pokeSender?: typeof pokeSenderMachine; ticker?: typeof tickerMachine }) {
  return supervisorMachine.provide({
    actors: {
      ...(actors.session ? { sessionGroup: sessionGroupMachine.provide({ actors: { session: actors.session } }) } : {}),
      ...(actors.pokeSender ? { pokeSender: actors.pokeSender } : {}),
      ...(actors.ticker ? { ticker: actors.ticker } : {}),
    },
  });
}
