import type { RequestHandler } from 'express';
import { INTERVENTION_TICKER, POKE_SENDER } from '../machines/supervisor.ts';
import { renderedAtMostEvery } from '../render-cache.ts';
import { pokeOf, sessionOf, tickerOf, type ObservedConnection, type ObserveSources } from '../metrics.ts';

/** The live actor tree as JSON (SPEC §3 `/debug/actors`): ids, states, counters; never a key or a frame. */
export function actorTree(s: ObserveSources, maxListedSessions = Number.POSITIVE_INFINITY) {
  const root = s.supervisor.getSnapshot();
  const poke = pokeOf(s)?.getSnapshot();
  const ticker = tickerOf(s)?.getSnapshot();
  const all = s.connections();
  const listed: [string, ObservedConnection][] = [];
  for (const entry of all) {
    if (listed.length >= maxListedSessions) break;
    listed.push(entry);
  }
  const sessions = listed.map(([id, connection]) => {
    const snapshot = sessionOf(s, id)?.getSnapshot();
    const c = snapshot?.context;
    return {
      id,
      state: snapshot?.value ?? null,
      provider: connection.provider,
      frames: connection.frames(),
      queuedBytes: connection.queuedBytes(),
      chunks: c?.chunksInferred ?? 0,
      chunksDropped: c?.chunksDropped ?? 0,
      captions: c?.captions ?? 0,
      /** Captions the session sends with its chunks (their text stays out of this view). */
      historyLength: c?.history.length ?? 0,
      inferenceErrors: c?.inferenceErrors ?? 0,
      consecutiveFailures: c?.failures ?? 0,
      degradedReason: c?.degradedReason ?? null,
    };
  });
  return {
    supervisor: {
      id: 'supervisor',
      state: root.value,
      sessionsOpened: root.context.sessionsOpened,
      sessionsClosed: root.context.sessionsClosed,
      pokeRestarts: root.context.pokeRestarts,
      tickerRestarts: root.context.tickerRestarts,
    },
    pokeSender: poke
      ? {
          id: POKE_SENDER,
          state: poke.value,
          active: poke.context.active,
          queued: poke.context.queue.length,
          sent: poke.context.sent,
          failed: poke.context.failed,
          refused: poke.context.refused,
        }
      : null,
    interventionTicker: ticker
      ? {
          id: INTERVENTION_TICKER,
          state: ticker.value,
          ticks: ticker.context.ticks,
          skippedOverlaps: ticker.context.skippedOverlaps,
          taken: ticker.context.taken,
          failures: ticker.context.failures,
          decisions: ticker.context.decisions,
          lastTickMs: ticker.context.lastTickMs,
          lastOutcome: ticker.context.lastOutcome?.status ?? null,
        }
      : null,
    captionSink: s.captionSink.stats(),
    /** Open sessions; `sessions` lists the first `maxListedSessions` of them, oldest first. */
    sessionsOpen: all.size,
    sessions,
  };
}

/** `GET /debug/actors`, rendered at most once per `cacheMs` and listing at most `maxListedSessions` sessions. */
export function debugActorsRoute(s: ObserveSources, options: { cacheMs: number; maxListedSessions: number }): RequestHandler {
  const render = renderedAtMostEvery(options.cacheMs, async () => JSON.stringify(actorTree(s, options.maxListedSessions)));
  return (_req, res, next) => {
    render().then((text) => res.type('application/json').send(text), next);
  };
}

