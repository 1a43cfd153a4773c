import type { RequestHandler } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Actor } from 'xstate';
import type { CaptionSink } from './adapters/caption-sink.ts';
import { renderedAtMostEvery } from './render-cache.ts';
import type { tickerMachine } from './machines/intervention.ts';
import {
  INTERVENTION_TICKER,
  POKE_SENDER,
  sessionSystemId,
  type PokeSenderRef,
  type SessionRef,
  type supervisorMachine,
} from './machines/supervisor.ts';

export type TickerRef = Actor<typeof tickerMachine>;

/** Running totals the socket layer bumps per frame: plain integers, so the hot path stays cheap. */
export interface StreamTotals {
  frames: number;
  bytes: number;
  acks: number;
}

/** What the socket layer reports per chunk and result (`ServerMetrics` implements it). */
export interface StreamMetrics {
  observeChunk(frames: number, bytes: number): void;
  /** `latencyMs`: the model's round trip for one chunk, in milliseconds. */
  observeCaption(latencyMs: number): void;
  countInferenceError(kind: string): void;
}

/** A live glasses connection, as observers see it. */
export interface ObservedConnection {
  /** Frames received so far. */
  frames(): number;
  /** Bytes waiting to be sent to the client. */
  queuedBytes(): number;
  /** Who captions it: `modal`, `openai`, `none` (VISION_PROVIDER, or `modal` for a connection with its own Modal pair). */
  provider: string;
}

export interface ObserveSources {
  supervisor: Actor<typeof supervisorMachine>;
  connections: () => ReadonlyMap<string, ObservedConnection>;
  captionSink: CaptionSink;
  totals: StreamTotals;
}

export const sessionOf = (s: ObserveSources, id: string) => s.supervisor.system.get(sessionSystemId(id)) as SessionRef | undefined;
export const pokeOf = (s: ObserveSources) => s.supervisor.system.get(POKE_SENDER) as PokeSenderRef | undefined;
export const tickerOf = (s: ObserveSources) => s.supervisor.system.get(INTERVENTION_TICKER) as TickerRef | undefined;

/** Prometheus metrics (SPEC §3 `/metrics`), one registry per server. */
export class ServerMetrics implements StreamMetrics {
  readonly registry = new Registry();
  private readonly chunkFrames: Histogram;
  private readonly chunkBytes: Histogram;
  private readonly inferenceLatency: Histogram;
  private readonly inferenceErrors: Counter<'kind'>;
  private readonly tickDuration: Histogram<'outcome'>;
  private watchedTicker: TickerRef | undefined;
  private tickSubscription: { unsubscribe(): void } | undefined;

  constructor(s: ObserveSources) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const total = (name: string, help: string, value: () => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(value());
        },
      });
    total('foresight_frames_received_total', 'Frames received from glasses', () => s.totals.frames);
    total('foresight_frame_bytes_received_total', 'Frame bytes received from glasses', () => s.totals.bytes);
    total('foresight_acks_sent_total', 'Acks sent to glasses', () => s.totals.acks);
    new Gauge({
      name: 'foresight_socket_queued_bytes',
      help: 'Bytes waiting to be sent to glasses clients: the sum over connections, and the largest',
      labelNames: ['of'],
      registers,
      collect() {
        let sum = 0;
        let max = 0;
        for (const connection of s.connections().values()) {
          const queued = connection.queuedBytes();
          sum += queued;
          max = Math.max(max, queued);
        }
        this.set({ of: 'sum' }, sum);
        this.set({ of: 'max' }, max);
      },
    });
    new Gauge({
      name: 'foresight_sessions',
      help: 'Open glasses sessions by inference and acking state',
      labelNames: ['inference', 'acking'],
      registers,
      collect() {
        this.reset();
        for (const id of s.connections().keys()) {
          const value = sessionOf(s, id)?.getSnapshot().value as { active?: { inference: string; acking: string } } | string | undefined;
          const active = typeof value === 'object' ? value.active : undefined;
          this.inc({ inference: active?.inference ?? String(value ?? 'gone'), acking: active?.acking ?? 'none' });
        }
      },
    });
    this.chunkFrames = new Histogram({
      name: 'foresight_chunk_frames',
      help: 'Frames handed to inference per chunk',
      buckets: [1, 2, 3, 4, 5, 6, 8, 12, 16],
      registers,
    });
    this.chunkBytes = new Histogram({
      name: 'foresight_chunk_bytes',
      help: 'Bytes handed to inference per chunk',
      buckets: [16_384, 65_536, 131_072, 262_144, 524_288, 1_048_576, 4_194_304],
      registers,
    });
    this.inferenceLatency = new Histogram({
      name: 'foresight_inference_latency_seconds',
      help: 'Latency of a chunk inference, as reported with its caption',
      buckets: [0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 30],
      registers,
    });
    this.inferenceErrors = new Counter({
      name: 'foresight_inference_errors_total',
      help: 'Inference errors by kind',
      labelNames: ['kind'],
      registers,
    });
    new Counter({
      name: 'foresight_caption_writes_total',
      help: 'Caption writes by outcome',
      labelNames: ['outcome'],
      registers,
      collect() {
        this.reset();
        const stats = s.captionSink.stats();
        for (const outcome of ['written', 'retried', 'failed', 'dropped'] as const) this.inc({ outcome }, stats[outcome]);
      },
    });
    new Counter({
      name: 'foresight_poke_sends_total',
      help: 'Poke sends by outcome',
      labelNames: ['outcome'],
      registers,
      collect() {
        this.reset();
        const context = pokeOf(s)?.getSnapshot().context;
        this.inc({ outcome: 'sent' }, context?.sent ?? 0);
        this.inc({ outcome: 'failed' }, context?.failed ?? 0);
        this.inc({ outcome: 'refused' }, context?.refused ?? 0);
      },
    });
    new Counter({
      name: 'foresight_interventions_total',
      help: 'Recorded interventions by decision',
      labelNames: ['decision'],
      registers,
      collect() {
        this.reset();
        const decisions = tickerOf(s)?.getSnapshot().context.decisions ?? { yes: 0, no: 0 };
        this.inc({ decision: 'yes' }, decisions.yes);
        this.inc({ decision: 'no' }, decisions.no);
      },
    });
    this.tickDuration = new Histogram({
      name: 'foresight_intervention_tick_seconds',
      help: 'Duration of intervention ticks by outcome',
      labelNames: ['outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    // The ticker is restarted as a new actor after a crash: follow whichever is live.
    const follow = () => {
      const ticker = tickerOf(s);
      if (ticker === this.watchedTicker) return;
      this.tickSubscription?.unsubscribe();
      this.watchedTicker = ticker;
      this.tickSubscription = ticker?.on('tick.finished', ({ ms, outcome }) => this.tickDuration.observe({ outcome }, ms / 1000));
    };
    follow();
    s.supervisor.subscribe({ next: follow, error: () => undefined });
    new Gauge({
      name: 'foresight_intervention_last_tick_seconds',
      help: 'Duration of the last intervention tick',
      registers,
      collect() {
        const ms = tickerOf(s)?.getSnapshot().context.lastTickMs;
        this.set(ms === null || ms === undefined ? 0 : ms / 1000);
      },
    });
    new Counter({
      name: 'foresight_intervention_ticks_total',
      help: 'Intervention ticks by outcome',
      labelNames: ['outcome'],
      registers,
      collect() {
        this.reset();
        const context = tickerOf(s)?.getSnapshot().context;
        this.inc({ outcome: 'completed' }, (context?.ticks ?? 0) - (context?.failures ?? 0) - (context?.taken ?? 0));
        this.inc({ outcome: 'failed' }, context?.failures ?? 0);
        this.inc({ outcome: 'taken' }, context?.taken ?? 0);
        this.inc({ outcome: 'skipped_overlap' }, context?.skippedOverlaps ?? 0);
      },
    });
  }

  observeChunk(frames: number, bytes: number): void {
    this.chunkFrames.observe(frames);
    this.chunkBytes.observe(bytes);
  }

  observeCaption(latencyMs: number): void {
    this.inferenceLatency.observe(latencyMs / 1000);
  }

  countInferenceError(kind: string): void {
    this.inferenceErrors.inc({ kind });
  }

  /** `GET /metrics`, rendered at most once per `cacheMs` (concurrent scrapes share one render). */
  route(cacheMs = 0): RequestHandler {
    const render = renderedAtMostEvery(cacheMs, () => this.registry.metrics());
    return (_req, res, next) => {
      render().then((text) => {
        res.type(this.registry.contentType).send(text);
      }, next);
    };
  }
}
