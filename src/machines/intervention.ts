import { assign, emit, fromPromise, raise, setup } from 'xstate';
import type { DecisionRequest, DecisionResult, NudgeAdvisor } from '../adapters/openai.ts';
import type { BiometricWindowRow, CaptionWindowRow, InterventionRow, NewIntervention, Store } from '../adapters/store.ts';
import type { Result } from '../result.ts';

// No Node-only imports here: the Worker's cron runs these machines against D1.

/** Sends a nudge to the wearer (Poke); resolves with the upstream answer or a reason. */
export interface NudgeSender {
  send(message: string): Promise<Result<unknown, { reason: string }>>;
}

export interface TickPorts {
  store: Store;
  advisor: NudgeAdvisor;
  nudges: NudgeSender;
}

/** In front of every nudge, so Poke's assistant delivers it as written. */
export const VERBATIM_PREFIX =
  'Send the user the following message exactly as written, without adding, removing or changing anything:\n\n';

/** How far back the model sees earlier interventions, so it does not repeat itself. */
export const HISTORY_MS = 24 * 60 * 60 * 1000;

export interface TickInput {
  now: number;
  periodMs: number;
  nudgeCooldownMs: number;
  /** False without `OPENAI_API_KEY`: the tick ends in `disabled` without touching anything. */
  enabled?: boolean;
}

export interface CollectedWindows {
  biometrics: BiometricWindowRow[];
  captions: CaptionWindowRow[];
  recent: InterventionRow[];
}

export type TickOutcome =
  | { status: 'disabled' }
  | { status: 'skipped' }
  /** Another ticker on the same store claimed this period first. */
  | { status: 'taken' }
  | { status: 'recorded'; decision: 'yes' | 'no'; nudged: boolean; interventionId: number; pokeError: string | null }
  | { status: 'failed'; error: string };

interface TickContext extends Omit<TickInput, 'enabled'>, CollectedWindows {
  enabled: boolean;
  /** The period this tick claimed: `now` rounded down to a multiple of `periodMs` (epoch ms). */
  periodStart: number;
  taken: boolean;
  decision: DecisionResult | null;
  pokeMessage: string | null;
  pokeSentAt: number | null;
  pokeError: string | null;
  interventionId: number;
  error: string | null;
}

class TickFailure extends Error {
  override name = 'TickFailure';
}

const reasonOf = (error: unknown) => (error instanceof Error ? error.message : 'failed');

/** The tick's side effects, built from ports; pass to `.provide({ actors })`. */
export const tickActors = (ports: TickPorts) => ({
  claimTick: fromPromise<boolean, { periodStart: number; now: number }>(({ input }) =>
    ports.store.claimTick(input.periodStart, input.now),
  ),
  claimNudge: fromPromise<boolean, { periodStart: number; now: number; cooldownMs: number }>(({ input }) =>
    ports.store.claimNudge(input.periodStart, input.now, input.cooldownMs),
  ),
  collectWindows: fromPromise<CollectedWindows, { sinceMs: number; historySinceMs: number }>(async ({ input }) => {
    const { biometrics, captions } = await ports.store.windowsSince(input.sinceMs);
    const recent = await ports.store.interventionsSince(input.historySinceMs, 10);
    return { biometrics, captions, recent };
  }),
  askForNudge: fromPromise<DecisionResult, DecisionRequest>(async ({ input, signal }) => {
    const result = await ports.advisor.decide(input, signal);
    if (!result.ok) throw new TickFailure(`${result.error.kind}: ${result.error.message}`);
    return result.value;
  }),
  sendNudge: fromPromise<unknown, { message: string }>(async ({ input }) => {
    const result = await ports.nudges.send(input.message);
    if (!result.ok) throw new TickFailure(result.error.reason);
    return result.value;
  }),
  recordIntervention: fromPromise<number, NewIntervention>(({ input }) => ports.store.insertIntervention(input)),
});

const notProvided = (name: string) => () => {
  throw new Error(`intervention actor "${name}" was not provided`);
};

/**
 * One intervention tick (SPEC §6): collect the windows created in the last
 * period (none: skip, no model call), ask the model with the recent
 * interventions for context, send the nudge through Poke unless one went out
 * within the cooldown, record the intervention. Its output is the outcome.
 */
export const tickMachine = setup({
  types: {} as { input: TickInput; context: TickContext; output: TickOutcome },
  actors: {
    claimTick: fromPromise<boolean, { periodStart: number; now: number }>(notProvided('claimTick')),
    claimNudge: fromPromise<boolean, { periodStart: number; now: number; cooldownMs: number }>(notProvided('claimNudge')),
    collectWindows: fromPromise<CollectedWindows, { sinceMs: number; historySinceMs: number }>(notProvided('collectWindows')),
    askForNudge: fromPromise<DecisionResult, DecisionRequest>(notProvided('askForNudge')),
    sendNudge: fromPromise<unknown, { message: string }>(notProvided('sendNudge')),
    recordIntervention: fromPromise<number, NewIntervention>(notProvided('recordIntervention')),
  },
  actions: {
    keepWindows: assign((_, params: CollectedWindows) => params),
    keepDecision: assign({ decision: (_, params: { decision: DecisionResult }) => params.decision }),
    markSent: assign({
      pokeMessage: (_, params: { message: string }) => params.message,
      pokeSentAt: ({ context }) => context.now,
    }),
    keepPokeError: assign({ pokeError: (_, params: { error: unknown }) => reasonOf(params.error) }),
    keepError: assign({ error: (_, params: { step: string; error: unknown }) => `${params.step}: ${reasonOf(params.error)}` }),
    keepId: assign({ interventionId: (_, params: { id: number }) => params.id }),
    markTaken: assign({ taken: true }),
  },
  guards: {
    enabled: ({ context }) => context.enabled,
    claimed: (_, params: { claimed: boolean }) => params.claimed,
    nothingNew: (_, params: CollectedWindows) => params.biometrics.length === 0 && params.captions.length === 0,
    wantsNudge: ({ context }, params: { decision: DecisionResult }) => {
      if (params.decision.decision !== 'yes' || !params.decision.nudge) return false;
      const lastSent = Math.max(0, ...context.recent.map((r) => r.pokeSentAt ?? 0));
      return context.now - lastSent >= context.nudgeCooldownMs;
    },
  },
}).createMachine({
  id: 'interventionTick',
  context: ({ input }) => ({
    ...input,
    enabled: input.enabled ?? true,
    periodStart: Math.floor(input.now / input.periodMs) * input.periodMs,
    taken: false,
    biometrics: [],
    captions: [],
    recent: [],
    decision: null,
    pokeMessage: null,
    pokeSentAt: null,
    pokeError: null,
    interventionId: 0,
    error: null,
  }),
  initial: 'checking',
  states: {
    checking: { always: [{ guard: 'enabled', target: 'claiming' }, { target: 'disabled' }] },
    disabled: { type: 'final' },
    // Before anything is asked: any number of tickers on one store run one tick per period.
    claiming: {
      invoke: {
        src: 'claimTick',
        input: ({ context }) => ({ periodStart: context.periodStart, now: context.now }),
        onDone: [
          { guard: { type: 'claimed', params: ({ event }) => ({ claimed: event.output }) }, target: 'collecting' },
          { target: 'taken', actions: 'markTaken' },
        ],
        onError: { target: 'failed', actions: { type: 'keepError', params: ({ event }) => ({ step: 'store', error: event.error }) } },
      },
    },
    taken: { type: 'final' },
    collecting: {
      invoke: {
        src: 'collectWindows',
        input: ({ context }) => ({ sinceMs: context.now - context.periodMs, historySinceMs: context.now - HISTORY_MS }),
        onDone: [
          {
            guard: { type: 'nothingNew', params: ({ event }) => event.output },
            target: 'skipped',
          },
          { target: 'deciding', actions: { type: 'keepWindows', params: ({ event }) => event.output } },
        ],
        onError: { target: 'failed', actions: { type: 'keepError', params: ({ event }) => ({ step: 'store', error: event.error }) } },
      },
    },
    deciding: {
      invoke: {
        src: 'askForNudge',
        input: ({ context }) => ({
          nowIso: new Date(context.now).toISOString(),
          biometrics: context.biometrics.map(({ id, timestamp, durationMs, qualityScore, riskPrediction, features }) => ({
            id,
            timestamp,
            durationMs,
            qualityScore,
            riskPrediction,
            features,
          })),
          captions: context.captions.map(({ id, timestamp, chunkStartS, chunkEndS, caption }) => ({
            id,
            timestamp,
            chunkStartS,
            chunkEndS,
            caption,
          })),
          recentInterventions: context.recent.map(({ createdAt, decision, reasoning, nudge, pokeSentAt }) => ({
            createdAt: new Date(createdAt).toISOString(),
            decision,
            reasoning,
            nudge,
            sent: pokeSentAt !== null,
          })),
        }),
        onDone: [
          {
            guard: { type: 'wantsNudge', params: ({ event }) => ({ decision: event.output }) },
            target: 'claimingNudge',
            actions: { type: 'keepDecision', params: ({ event }) => ({ decision: event.output }) },
          },
          { target: 'recording', actions: { type: 'keepDecision', params: ({ event }) => ({ decision: event.output }) } },
        ],
        onError: { target: 'failed', actions: { type: 'keepError', params: ({ event }) => ({ step: 'model', error: event.error }) } },
      },
    },
    // The cooldown, decided by the store in one statement: two tickers never both send.
    claimingNudge: {
      invoke: {
        src: 'claimNudge',
        input: ({ context }) => ({ periodStart: context.periodStart, now: context.now, cooldownMs: context.nudgeCooldownMs }),
        onDone: [
          { guard: { type: 'claimed', params: ({ event }) => ({ claimed: event.output }) }, target: 'notifying' },
          { target: 'recording' },
        ],
        onError: { target: 'failed', actions: { type: 'keepError', params: ({ event }) => ({ step: 'store', error: event.error }) } },
      },
    },
    notifying: {
      invoke: {
        src: 'sendNudge',
        input: ({ context }) => ({ message: `${VERBATIM_PREFIX}${context.decision?.nudge ?? ''}` }),
        onDone: {
          target: 'recording',
          actions: {
            type: 'markSent',
            params: ({ context }) => ({ message: `${VERBATIM_PREFIX}${context.decision?.nudge ?? ''}` }),
          },
        },
        // The decision is still recorded; the row shows no poke_sent_at.
        onError: { target: 'recording', actions: { type: 'keepPokeError', params: ({ event }) => ({ error: event.error }) } },
      },
    },
    recording: {
      invoke: {
        src: 'recordIntervention',
        input: ({ context }) => {
          const d = context.decision as DecisionResult;
          return {
            decision: d.decision,
            reasoning: d.reasoning,
            nudge: d.nudge,
            biometricIds: context.biometrics.map((b) => b.id),
            captionIds: context.captions.map((c) => c.id),
            model: d.model,
            promptTokens: d.promptTokens,
            completionTokens: d.completionTokens,
            totalTokens: d.totalTokens,
            pokeMessage: context.pokeMessage,
            pokeSentAt: context.pokeSentAt,
          };
        },
        onDone: { target: 'recorded', actions: { type: 'keepId', params: ({ event }) => ({ id: event.output }) } },
        onError: { target: 'failed', actions: { type: 'keepError', params: ({ event }) => ({ step: 'store', error: event.error }) } },
      },
    },
    skipped: { type: 'final' },
    recorded: { type: 'final' },
    failed: { type: 'final' },
  },
  output: ({ context }): TickOutcome => {
    if (!context.enabled) return { status: 'disabled' };
    if (context.taken) return { status: 'taken' };
    if (context.error !== null) return { status: 'failed', error: context.error };
    if (context.decision === null) return { status: 'skipped' };
    return {
      status: 'recorded',
      decision: context.decision.decision,
      nudged: context.pokeSentAt !== null,
      interventionId: context.interventionId,
      pokeError: context.pokeError,
    };
  },
});

export interface TickerInput {
  /** False without `OPENAI_API_KEY` or with `INTERVENTION_TICK=off`: the ticker sits in `disabled`. */
  enabled: boolean;
  periodMs: number;
  nudgeCooldownMs: number;
  now?: () => number;
}

interface TickerContext {
  enabled: boolean;
  periodMs: number;
  nudgeCooldownMs: number;
  now: () => number;
  ticks: number;
  skippedOverlaps: number;
  /** Ticks whose period another ticker on the same store had claimed. */
  taken: number;
  failures: number;
  lastOutcome: TickOutcome | null;
  tickStartedAt: number;
  lastTickMs: number | null;
  decisions: { yes: number; no: number };
}

/**
 * Fires a tick every period (SPEC §6). Ticks never overlap: a period that ends
 * while a tick still runs is skipped and counted. A `permanent` supervisor child.
 */
export const tickerMachine = setup({
  types: {} as {
    input: TickerInput;
    context: TickerContext;
    events: { type: 'tick.due' };
    emitted: { type: 'tick.finished'; ms: number; outcome: TickOutcome['status'] };
  },
  actors: { tick: tickMachine },
  actions: {
    countSkipped: assign({ skippedOverlaps: ({ context }) => context.skippedOverlaps + 1 }),
    // Durations on a monotonic clock; `now` (the wall clock) is for the stored times.
    startTick: assign({ tickStartedAt: () => performance.now() }),
    keepOutcome: assign({
      lastTickMs: ({ context }) => Math.round(performance.now() - context.tickStartedAt),
      decisions: ({ context }, params: { outcome: TickOutcome }) =>
        params.outcome.status === 'recorded'
          ? { ...context.decisions, [params.outcome.decision]: context.decisions[params.outcome.decision] + 1 }
          : context.decisions,
      ticks: ({ context }) => context.ticks + 1,
      failures: ({ context }, params: { outcome: TickOutcome }) =>
        context.failures + (params.outcome.status === 'failed' ? 1 : 0),
      taken: ({ context }, params: { outcome: TickOutcome }) => context.taken + (params.outcome.status === 'taken' ? 1 : 0),
      lastOutcome: (_, params: { outcome: TickOutcome }) => params.outcome,
    }),
    announceTick: emit(({ context }) => ({
      type: 'tick.finished' as const,
      ms: context.lastTickMs ?? 0,
      outcome: context.lastOutcome?.status ?? 'failed',
    })),
    countCrash: assign({ ticks: ({ context }) => context.ticks + 1, failures: ({ context }) => context.failures + 1 }),
  },
  guards: { enabled: ({ context }) => context.enabled },
  delays: { tickInterval: ({ context }) => context.periodMs },
}).createMachine({
  id: 'interventionTicker',
  context: ({ input }) => ({
    enabled: input.enabled,
    periodMs: input.periodMs,
    nudgeCooldownMs: input.nudgeCooldownMs,
    now: input.now ?? Date.now,
    ticks: 0,
    skippedOverlaps: 0,
    taken: 0,
    failures: 0,
    lastOutcome: null,
    tickStartedAt: 0,
    lastTickMs: null,
    decisions: { yes: 0, no: 0 },
  }),
  initial: 'checking',
  states: {
    checking: { always: [{ guard: 'enabled', target: 'running' }, { target: 'disabled' }] },
    disabled: {},
    running: {
      type: 'parallel',
      states: {
        clock: {
          initial: 'waiting',
          states: {
            waiting: { after: { tickInterval: { target: 'waiting', reenter: true, actions: raise({ type: 'tick.due' }) } } },
          },
        },
        work: {
          initial: 'idle',
          states: {
            idle: { on: { 'tick.due': 'ticking' } },
            ticking: {
              entry: 'startTick',
              on: { 'tick.due': { actions: 'countSkipped' } },
              invoke: {
                src: 'tick',
                input: ({ context }) => ({
                  now: context.now(),
                  periodMs: context.periodMs,
                  nudgeCooldownMs: context.nudgeCooldownMs,
                }),
                onDone: {
                  target: 'idle',
                  actions: [{ type: 'keepOutcome', params: ({ event }) => ({ outcome: event.output }) }, 'announceTick'],
                },
                onError: { target: 'idle', actions: 'countCrash' },
              },
            },
          },
        },
      },
    },
  },
});

/** Provides a ticker's tick with its ports. */
export const tickerWith = (ports: TickPorts) =>
  tickerMachine.provide({ actors: { tick: tickMachine.provide({ actors: tickActors(ports) }) } });
