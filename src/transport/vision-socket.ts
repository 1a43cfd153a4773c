import { Subject } from 'rxjs';
import type { Actor } from 'xstate';
import type { AckFields, SessionVisionSettings } from '../machines/session.ts';
import { sessionSystemId, type SessionRef, type supervisorMachine } from '../machines/supervisor.ts';
import type { StreamMetrics, StreamTotals } from '../metrics.ts';
import { captionUploadFromAck } from '../schemas/uploads.ts';
import type { CaptionSink } from '../adapters/caption-sink.ts';
import type { InferenceTarget } from '../adapters/inference.ts';
import type { Logger } from '../adapters/logger.ts';
import type { ServerWebSocket } from './websocket.ts';

/** Results finished between two acks wait here, oldest first; past this the oldest is dropped. */
export const MAX_PENDING_RESULTS = 16;

export const BINARY_ONLY = JSON.stringify({ error: 'binary frames only' });

/**
 * What a client reads in `inference_error`, by kind: short and stable. The
 * model's own message (which may name internal hosts and ports) goes to the
 * logs and `/debug/actors`, never on the wire (finding 17).
 */
export const CLIENT_ERROR_TEXT: Record<string, string> = {
  'no-credentials': 'no model credentials',
  'open-failed': 'model unavailable',
  timeout: 'inference timed out',
  remote: 'inference failed',
  'invalid-output': 'invalid inference output',
};

export interface VisionConnection {
  sessionId: string;
  /** Settles once the session actor has finished closing. */
  finished: Promise<void>;
  /** Frames received so far (the ack counter). */
  frames(): number;
  /** Bytes waiting to be sent to the client (see `ServerWebSocket.bufferedAmount`). */
  queuedBytes(): number;
}

export interface VisionSocketOptions {
  supervisor: Actor<typeof supervisorMachine>;
  sessionId: string;
  vision: SessionVisionSettings;
  /** How much longer than the chunk span the session's first window lasts (see `windowFrames`). */
  firstWindowDelayMs?: number;
  /** Model credentials the client sent with the upgrade, if any. */
  inferenceTarget?: InferenceTarget;
  /** Receives every caption, keyed by its window id. */
  captions: CaptionSink;
  /**
   * A caption rides on an ack only once `captions` has stored it, so a caption a
   * client has seen survives a crash (`kill -9`) of this process. Off when the
   * captions go to the Worker: its relay stores every caption ack it passes on.
   */
  holdCaptionsUntilStored?: boolean;
  /** Runs the session's close once the socket has gone (the server's close queue: one per event-loop turn). */
  deferClose?: (task: () => void) => void;
  /** Totals bumped per frame and the metrics fed per chunk and result. */
  observe: { totals: StreamTotals; metrics: StreamMetrics };
  logger: Logger;
}

function ackWith(frame: number, bytes: number, fields: AckFields): string {
  return JSON.stringify({ frame, bytes, ...fields });
}

/**
 * Binds one `/vision/stream` socket to a session actor (SPEC §4). The per-frame
 * path stays outside the machine: count, ack, hand the bytes to the windowing
 * stream. The machine only hears about chunks, throttling and the close.
 */
export function serveVisionSocket(ws: ServerWebSocket, options: VisionSocketOptions): VisionConnection {
  const { supervisor, sessionId, vision, captions, logger } = options;
  const { totals, metrics } = options.observe;
  // Wall clock for the stored caption times; the monotonic clock for how long the session lasted.
  const openedAt = Date.now();
  const openedAtMono = performance.now();
  const frames = new Subject<Uint8Array>();
  supervisor.send({
    type: 'session.open',
    input: {
      sessionId,
      frames,
      vision,
      ...(options.inferenceTarget ? { inferenceTarget: options.inferenceTarget } : {}),
      ...(options.firstWindowDelayMs ? { firstWindowDelayMs: options.firstWindowDelayMs } : {}),
    },
  });
  const session = supervisor.system.get(sessionSystemId(sessionId)) as SessionRef;

  logger.debug({}, 'session opened');
  let frameCount = 0;
  /** Results waiting for a frame's ack to ride on, oldest first; a caption is ready once stored. */
  const pending: Array<{ fields: AckFields; ready: boolean }> = [];

  const finished = new Promise<void>((resolve) => {
    session.subscribe({ complete: resolve, error: () => resolve() });
  });

  session.on('chunk.started', ({ frames: count, bytes }) => metrics.observeChunk(count, bytes));

  session.on('inference.outcome', (outcome) => {
    let { fields } = outcome;
    const { errorKind } = outcome;
    if ('inference_error' in fields) {
      metrics.countInferenceError(errorKind ?? 'unknown');
      logger.warn({ kind: errorKind, windowId: fields.window_id, detail: fields.inference_error }, 'inference failed');
      fields = { ...fields, inference_error: CLIENT_ERROR_TEXT[errorKind ?? ''] ?? 'inference failed' };
    }
    const hold = 'caption' in fields && options.holdCaptionsUntilStored === true;
    const result = { fields, ready: !hold };
    if ('caption' in fields) {
      metrics.observeCaption(fields.latency_ms);
      const written = captions.write(captionUploadFromAck(fields, openedAt));
      // A caption the client has seen is in the store: it rides on an ack once written (finding 8).
      if (hold) void written.then((stored) => {
        if (!stored) {
          metrics.countInferenceError('not-stored');
          result.fields = {
            inference_error: 'caption not stored',
            window_id: fields.window_id,
            chunk_start_s: fields.chunk_start_s,
            chunk_end_s: fields.chunk_end_s,
          };
        }
        result.ready = true;
      });
    }
    if (pending.length === MAX_PENDING_RESULTS) {
      pending.shift();
      logger.warn({ sessionId }, 'result dropped: client sent no frame to carry it');
    }
    pending.push(result);
  });

  session.on('session.close', ({ code, reason }) => ws.close(code, reason));

  const onFrame = (bytes: Uint8Array) => {
    frameCount += 1;
    totals.frames += 1;
    totals.bytes += bytes.length;
    totals.acks += 1;
    const result = pending[0]?.ready ? pending.shift()?.fields : undefined;
    ws.send(result === undefined ? `{"frame":${frameCount},"bytes":${bytes.length}}` : ackWith(frameCount, bytes.length, result));
    // The bytes are lent until the next frame arrives; the windowing keeps (takes over or copies) what it needs.
    if (bytes.length > 0) frames.next(bytes);
  };

  const onClose = (code: number) => {
    const { context } = session.getSnapshot();
    const seconds = (performance.now() - openedAtMono) / 1000;
    logger.info(
      {
        code,
        seconds: Math.round(seconds * 10) / 10,
        frames: frameCount,
        fps: seconds > 0 ? Math.round((frameCount / seconds) * 10) / 10 : 0,
        chunks: context.chunksInferred,
        chunksDropped: context.chunksDropped,
        captions: context.captions,
        inferenceErrors: context.inferenceErrors,
        degradedReason: context.degradedReason,
      },
      'session closed',
    );
    const defer = options.deferClose ?? ((task: () => void) => task());
    defer(() => {
      frames.complete();
      supervisor.send({ type: 'session.close', sessionId });
    });
  };

  ws.start({
    binary: onFrame,
    text: () => ws.send(BINARY_ONLY),
    close: onClose,
    // Slow-client policy (SPEC §4): the socket stops reading while its queue is over the bound;
    // a client that stays throttled past the session's `slowClientTimeout` is closed with 1008.
    throttled: () => session.send({ type: 'socket.throttled' }),
    drained: () => session.send({ type: 'socket.drained' }),
    rateLimited: (closing) => {
      if (closing) logger.warn({}, 'rate limit exceeded: closing with 1008');
    },
    error: (error) => logger.error({ err: String(error) }, 'message handling failed: closing with 1011'),
  });

  return { sessionId, finished, frames: () => frameCount, queuedBytes: () => ws.bufferedAmount };
}
