import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import { createActor, type Actor, type ActorOptions, type AnyActorLogic } from 'xstate';
import type { InferencePort } from './adapters/inference.ts';
import { modalTargetFromHeaders, type ModalInferenceOptions } from './adapters/modal.ts';
import { createVisionInference, describeVisionProvider, type VisionInference } from './adapters/vision-provider.ts';
import { startInspection } from './adapters/inspect.ts';
import { createLogger, type Logger } from './adapters/logger.ts';
import {
  createCaptionSink,
  storeCaptionWriter,
  workerCaptionWriter,
  type CaptionSink,
} from './adapters/caption-sink.ts';
import { createOpenAIAdvisor, type NudgeAdvisor } from './adapters/openai.ts';
import { createPokeClient, type PokeClient } from './adapters/poke.ts';
import { openSqliteStoreInWorker } from './adapters/sqlite-worker.ts';
import type { Store } from './adapters/store.ts';
import { isAuthorized } from './auth.ts';
import type { Config } from './config.ts';
import { sessionActors, sessionMachine, type SessionVisionSettings } from './machines/session.ts';
import { TurnQueue } from './streams/turns.ts';
import { tickerWith, type NudgeSender } from './machines/intervention.ts';
import { pokeSenderWith, type PokeSenderInput } from './machines/poke.ts';
import { err, ok } from './result.ts';
import { sessionSystemId, supervisorMachine, supervisorWith, type SessionRef } from './machines/supervisor.ts';
import { ServerMetrics, type StreamTotals } from './metrics.ts';
import { debugActorsRoute } from './routes/observe.ts';
import { MAX_POKE_BODY_BYTES, pokeRequests, pokeRoute, type PokeRequests } from './routes/poke.ts';
import {
  answerUpload,
  biometricUploadSchema,
  captionUploadSchema,
  encodingRefusal,
  MAX_UPLOAD_BYTES,
  TOO_LARGE,
  type JsonBodyRequest,
  type UploadAnswer,
} from './schemas/uploads.ts';
import { serveVisionSocket, type VisionConnection } from './transport/vision-socket.ts';
import {
  acceptWebSocket,
  answerAndClose,
  canTakeOverHandles,
  startHeartbeat,
  type HandleOf,
  type ServerWebSocket,
} from './transport/websocket.ts';
import { StartupError } from './startup-error.ts';

type Clock = NonNullable<ActorOptions<AnyActorLogic>['clock']>;

export const VISION_PATH = '/vision/stream';

export interface ServerDeps {
  config: Config;
  inference?: InferencePort;
  /** Extra Modal SDK client settings of the built-in vision inference (tests stand in for Modal with `grpcMiddleware`). */
  modalClient?: ModalInferenceOptions['client'];
  /** The embedded store; by default SQLite at `DATABASE_PATH`, opened (and closed) by the server. */
  store?: Store;
  /** Where session captions go; by default the Worker when configured, else the store. */
  captionSink?: CaptionSink;
  /** The Poke HTTP client; by default undici against `POKE_API_URL`. */
  pokeClient?: PokeClient;
  /** Queue, concurrency and retry settings of the Poke sender. */
  poke?: PokeSenderInput;
  /** The intervention model; by default OpenAI when `OPENAI_API_KEY` is set. */
  advisor?: NudgeAdvisor;
  /** Reports inspection to this relay (`ws://…`) instead of starting one on `INSPECT_PORT`. */
  inspectorRelayUrl?: string;
  logger?: Logger;
  /**
   * How much longer than `VISION_CHUNK_SECONDS` a session's first window lasts,
   * given the span in ms; by default a random share of it, so sessions that
   * connect together do not cut their chunks at the same instants.
   */
  firstWindowDelayMs?: (chunkMs: number) => number;
  /** How the transport reads a socket's OS handle; tests simulate a Node without one. */
  handleOf?: HandleOf;
  /** Replaces the session machine, e.g. with shorter delays in tests; its actors are still provided from `inference`. */
  session?: typeof sessionMachine;
  clock?: Clock;
}

export interface RunningServer {
  url: string;
  /** The Stately inspector relay's page, when this server runs one (without the magic word). */
  inspectorUrl: string | undefined;
  port: number;
  supervisor: Actor<typeof supervisorMachine>;
  store: Store;
  captionSink: CaptionSink;
  connections(): ReadonlyMap<string, VisionConnection>;
  /** The live session actor of a connection, if any. */
  session(sessionId: string): SessionRef | undefined;
  /** Graceful stop (SPEC §4): stop accepting, close sessions with 1001, wait for them, within `deadlineMs`. */
  close(deadlineMs?: number): Promise<void>;
}

/** How long a client gets to answer our close frame before its socket is cut. */
const CLOSE_HANDSHAKE_MS = 2_000;

const REASONS: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 500: 'Internal Server Error', 503: 'Service Unavailable' };

/** Answers an upgrade request that will not be upgraded, and closes the connection. */
function refuseUpgrade(socket: Duplex, status: 400 | 403 | 404 | 500 | 503, detail: string): void {
  const text = JSON.stringify({ detail });
  answerAndClose(
    socket,
    `HTTP/1.1 ${status} ${REASONS[status]}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
  );
}

/** The request target as a URL, or undefined when it is not one (`//[`, say): the caller answers 400. */
function requestUrl(req: IncomingMessage): URL | undefined {
  return URL.parse(req.url ?? '/', 'http://localhost') ?? undefined;
}

/**
 * An upload route: the raw body (at most `MAX_UPLOAD_BYTES`; an encoded one
 * refused unread; read only once `admit` lets it in, see `bodyBudget`) read,
 * checked and stored by the rules the Worker uses too (`answerUpload`).
 */
function uploadRoute(admit: RequestHandler, answer: (request: JsonBodyRequest) => Promise<UploadAnswer>): RequestHandler[] {
  const unencoded: RequestHandler = (req, res, next) => {
    const refusal = encodingRefusal(req.headers['content-encoding']);
    if (refusal) res.set('connection', 'close').status(refusal.status).json(refusal.body);
    // Refused before any of it is read (body-parser would read it all to its end first).
    else if (Number(req.headers['content-length'] ?? 0) > MAX_UPLOAD_BYTES) res.set('connection', 'close').status(TOO_LARGE.status).json(TOO_LARGE.body);
    else next();
  };
  // Any content type is read: wearables do not all send the header.
  const raw = express.raw({ limit: MAX_UPLOAD_BYTES, type: () => true, inflate: false });
  const handler: RequestHandler = (req, res, next) => {
    const bytes: Uint8Array = Buffer.isBuffer(req.body) ? req.body : new Uint8Array(0);
    answer({ contentType: req.headers['content-type'], contentEncoding: req.headers['content-encoding'], bytes }).then(
      ({ status, body }) => res.status(status).json(body),
      next,
    );
  };
  return [unencoded, admit, raw, handler];
}

/**
 * Admits a request whose body is yet to be read while the bodies being read
 * at once stay within `maxBytes` (each counted at its declared length, at most
 * `limit`, or at `limit` when chunked), until its answer is sent. Past that it
 * is answered 503 unread, with `Retry-After: 1`: many slow bodies cannot add
 * up to more memory than this, however many connections bring them.
 */
function bodyBudget(maxBytes: number): (limit: number) => RequestHandler {
  let reserved = 0;
  return (limit) => (req, res, next) => {
    const declared = Number(req.headers['content-length']);
    const need = Number.isFinite(declared) && declared >= 0 ? Math.min(declared, limit) : limit;
    if (reserved + need > maxBytes) {
      res.set({ connection: 'close', 'retry-after': '1' }).status(503).json({ detail: 'server busy: too many request bodies being read' });
      return;
    }
    reserved += need;
    res.once('close', () => (reserved -= need));
    next();
  };
}

/** The Express app: public `/health`, magic-word auth for the rest, uploads, JSON 404 and errors. */
export function createApp(
  config: Config,
  store: Store,
  logger: Logger,
  pokes: PokeRequests,
  observe: { metrics: RequestHandler; debugActors: RequestHandler },
): { app: express.Express; drain(graceMs: number): Promise<void> } {
  const app = express();
  app.disable('x-powered-by');
  // Requests being answered, so that a shutdown answers each one before the process exits.
  const inFlight = new Set<express.Response>();
  let draining = false;
  app.use((_req, res, next) => {
    if (draining) {
      res.set('connection', 'close').status(503).json({ detail: 'server shutting down' });
      return;
    }
    inFlight.add(res);
    res.on('close', () => inFlight.delete(res));
    next();
  });
  app.get('/health', (_req, res) => {
    res.json({ status: 'ok' });
  });
  const requireMagicWord: RequestHandler = (req, res, next) => {
    const url = requestUrl(req);
    if (!url) {
      res.status(400).json({ detail: 'bad request' });
      return;
    }
    if (isAuthorized(config.magicWord, req.headers, url)) return next();
    res.status(403).json({ detail: 'forbidden' });
  };
  app.use(requireMagicWord);
  const storeFailed = (error: unknown) => logger.error({ err: String(error) }, 'upload not stored');
  const admit = bodyBudget(config.http.maxBodyBytesInFlight);
  app.post(
    '/biometrics/upload',
    ...uploadRoute(admit(MAX_UPLOAD_BYTES), (request) => answerUpload(biometricUploadSchema, request, (b) => store.insertBiometricWindow(b), storeFailed)),
  );
  app.post(
    '/captions/upload',
    ...uploadRoute(admit(MAX_UPLOAD_BYTES), (request) => answerUpload(captionUploadSchema, request, (c) => store.insertCaptionWindow(c), storeFailed)),
  );
  app.post('/poke/send', admit(MAX_POKE_BODY_BYTES), ...pokeRoute(config, pokes, { requestTimeoutMs: config.poke.requestTimeoutMs }));
  app.get('/metrics', observe.metrics);
  app.get('/debug/actors', observe.debugActors);
  app.use((_req, res) => {
    res.status(404).json({ detail: 'not found' });
  });
  const onError: ErrorRequestHandler = (error: { status?: number; type?: string }, req, res, _next) => {
    // Bad input is never a 500: an oversized upload body is a 400 that says why. A declared
    // length over the limit is refused before any of the body is read, and the connection is
    // closed rather than read to its end.
    if (error.type === 'entity.too.large') {
      res.set('connection', 'close').status(TOO_LARGE.status).json(TOO_LARGE.body);
      return;
    }
    const status = typeof error.status === 'number' && error.status >= 400 && error.status < 500 ? error.status : 500;
    if (status === 500) logger.error({ err: String(error), path: req.path }, 'request failed');
    res.status(status).json({ detail: status === 500 ? 'internal error' : (error.type ?? 'bad request') });
  };
  app.use(onError);
  /**
   * Shutdown (SPEC §4, finding 16): new requests get 503; the ones in flight get
   * `graceMs` to be answered (Poke sends are cancelled and answered by the
   * caller first), then whatever is still unanswered gets a 503.
   */
  const drain = async (graceMs: number) => {
    draining = true;
    const until = performance.now() + graceMs;
    while (inFlight.size > 0 && performance.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
    for (const res of inFlight) {
      if (!res.headersSent) res.set('connection', 'close').status(503).json({ detail: 'server shutting down' });
    }
  };
  return { app, drain };
}

/** Composition root: config → adapters → machines → HTTP + WebSocket server, listening. */
export async function startServer(deps: ServerDeps): Promise<RunningServer> {
  const { config } = deps;
  // The vision socket takes each connection's handle over from Node (src/transport/websocket.ts).
  if (!(await canTakeOverHandles(deps.handleOf))) {
    throw new StartupError(
      `this Node (${process.version}) cannot hand a socket's handle to the WebSocket transport (net.Socket _handle, onread); ` +
        'run the server on the Node versions package.json names (engines)',
    );
  }
  const logger = deps.logger ?? createLogger(config.logLevel);
  // VISION_PROVIDER picks the model; without one (no Modal pair, no VISION_OPENAI_*), every
  // session is a degraded no-op unless its connection brings a Modal pair.
  const visionOptions = {
    provider: config.visionProvider,
    modal: config.modal,
    timeoutMs: config.vision.inferenceTimeoutMs,
    logger,
    ...(deps.modalClient ? { modalClient: deps.modalClient } : {}),
  };
  const inference: InferencePort & Partial<Pick<VisionInference, 'providerFor'>> = deps.inference ?? createVisionInference(visionOptions);
  if (!deps.inference) logger.info(describeVisionProvider(visionOptions), 'vision provider');
  // One queue for the chunk work of every session: one task per event-loop turn (streams/turns.ts).
  const chunkQueue = new TurnQueue();
  // Sessions that close together (a redeploy, a network cut) are torn down one per turn too.
  const closeQueue = new TurnQueue();
  const session = (deps.session ?? sessionMachine).provide({
    actors: sessionActors(inference, chunkQueue.defer, closeQueue.defer),
  });
  const pokeClient = deps.pokeClient ?? createPokeClient({ url: config.poke.url });
  // The embedded store runs in a worker thread: no SQLite call, no lock wait, on the event loop.
  const store = deps.store ?? (await openSqliteStoreInWorker({ path: config.databasePath, busyTimeoutMs: config.databaseBusyTimeoutMs }));
  const workerWriter =
    config.workerBaseUrl && config.magicWord
      ? workerCaptionWriter({ baseUrl: config.workerBaseUrl, magicWord: config.magicWord })
      : undefined;
  const captionLogger = logger.child({ component: 'captions' });
  // A caption rides on an ack only once stored, so one that comes while the writer is idle is
  // written at once. The embedded store (a worker thread) takes one batch at a time, one
  // transaction each, at most every 50 ms: under load captions gather for at most that long,
  // and the thread is woken 20 times a second, not once a caption (bench (b): 2 % of a core).
  const captionSink =
    deps.captionSink ??
    (workerWriter
      ? createCaptionSink(workerWriter, { logger: captionLogger })
      : createCaptionSink(storeCaptionWriter(store), { logger: captionLogger, batchSize: 100, concurrency: 1, spacingMs: 50 }));
  if (config.workerBaseUrl && !config.magicWord) {
    logger.warn({}, 'WORKER_BASE_URL is set without MAGIC_WORD: captions stay in the embedded store');
  }

  const advisor =
    deps.advisor ??
    (config.openai.apiKey
      ? createOpenAIAdvisor({
          apiKey: config.openai.apiKey,
          ...(config.openai.baseUrl ? { baseURL: config.openai.baseUrl } : {}),
          model: config.intervention.model,
        })
      : undefined);
  // The ticker's nudges go through the same Poke sender actor as /poke/send (`pokes`, below).
  const nudges: NudgeSender = {
    async send(message) {
      if (!config.poke.apiKey) return err({ reason: 'Poke API key not configured' });
      const outcome = await pokes.send(message, config.poke.apiKey);
      return outcome.ok ? ok(outcome.data) : err({ reason: outcome.reason });
    },
  };
  const noAdvisor: NudgeAdvisor = { decide: async () => err({ kind: 'api', message: 'OPENAI_API_KEY not configured' }) };
  const ticker = tickerWith({ store, advisor: advisor ?? noAdvisor, nudges });
  // Off unless asked for: no inspector, no cost.
  const inspection =
    config.inspect.enabled || deps.inspectorRelayUrl
      ? await startInspection({
          port: config.inspect.port,
          host: config.inspect.host,
          magicWord: config.magicWord,
          pingIntervalMs: config.vision.pingIntervalMs,
          peerTimeoutMs: config.vision.peerTimeoutMs,
          ...(deps.inspectorRelayUrl ? { relayUrl: deps.inspectorRelayUrl } : {}),
        })
      : undefined;
  if (inspection?.url) logger.info({ url: inspection.url }, 'Stately inspector: open this URL');
  const supervisor = createActor(
    supervisorWith({ session, pokeSender: pokeSenderWith(pokeClient), ticker }),
    {
      ...(inspection ? { inspect: inspection.inspect } : {}),
      input: {
        poke: deps.poke ?? {},
        ticker: {
          enabled: config.intervention.enabled && advisor !== undefined,
          periodMs: config.intervention.tickMs,
          nudgeCooldownMs: config.intervention.nudgeCooldownMs,
        },
      },
      ...(deps.clock ? { clock: deps.clock } : {}),
    },
  ).start();
  const pokes = pokeRequests(supervisor);

  if (config.magicWord === undefined) {
    logger.warn({}, 'MAGIC_WORD is not set: every route is open to anyone who can reach this port');
  }

  const vision: SessionVisionSettings = config.vision;
  const firstWindowDelay = deps.firstWindowDelayMs ?? ((chunkMs: number) => Math.random() * chunkMs);
  const sockets = new Map<string, ServerWebSocket>();
  const connections = new Map<string, VisionConnection & { provider: string }>();
  const totals: StreamTotals = { frames: 0, bytes: 0, acks: 0 };
  const observeSources = { supervisor, connections: () => connections, captionSink, totals };
  const metrics = new ServerMetrics(observeSources);
  const { app, drain } = createApp(config, store, logger, pokes, {
    metrics: metrics.route(config.observe.cacheMs),
    debugActors: debugActorsRoute(observeSources, config.observe),
  });
  // Slow headers and trickled bodies get a 408 (finding 15); Node checks these timeouts every
  // connectionsCheckingInterval (30 s by default, which let them run to 60-90 s).
  const server: Server = createServer(
    {
      headersTimeout: config.http.headersTimeoutMs,
      requestTimeout: Math.max(config.http.requestTimeoutMs, config.http.headersTimeoutMs),
      keepAliveTimeout: config.http.keepAliveTimeoutMs,
      connectionsCheckingInterval: Math.min(1_000, config.http.headersTimeoutMs),
    },
    app,
  );
  let accepting = true;

  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    // Node leaves an upgraded socket without an error listener: a peer that resets it
    // (after a refusal, say) would otherwise end the process.
    socket.on('error', () => socket.destroy());
    try {
      upgrade(req, socket, head);
    } catch (error) {
      logger.error({ err: String(error) }, 'upgrade failed');
      refuseUpgrade(socket, 500, 'internal error');
    }
  });

  const upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const url = requestUrl(req);
    if (!url) return refuseUpgrade(socket, 400, 'bad request');
    if (url.pathname !== VISION_PATH) return refuseUpgrade(socket, 404, 'not found');
    if (!accepting) return refuseUpgrade(socket, 503, 'shutting down');
    if (!isAuthorized(config.magicWord, req.headers, url)) return refuseUpgrade(socket, 403, 'forbidden');
    if (sockets.size >= config.vision.maxConnections) return refuseUpgrade(socket, 503, 'too many connections');
    const modal = modalTargetFromHeaders(req.headers);
    const ws = acceptWebSocket(req, socket, head, {
      maxMessageBytes: config.vision.maxFrameBytes,
      maxBufferedBytes: config.vision.maxQueuedBytes,
      rateLimits: {
        framesPerSecond: config.vision.maxMessagesPerSecond,
        bytesPerSecond: config.vision.maxBytesPerSecond,
        closeAfterMs: config.vision.rateLimitCloseMs,
      },
      keepAliveMs: config.vision.pingIntervalMs,
      protocols: config.vision.subprotocols,
      deferClose: closeQueue.defer,
    });
    if (!ws) return;
    const sessionId = randomUUID();
    if (modal.ignored) logger.warn({ sessionId }, modal.ignored);
    const connection = serveVisionSocket(ws, {
      supervisor,
      sessionId,
      vision,
      firstWindowDelayMs: firstWindowDelay(vision.chunkMs),
      ...(modal.target ? { inferenceTarget: modal.target } : {}),
      captions: captionSink,
      holdCaptionsUntilStored: workerWriter === undefined,
      deferClose: closeQueue.defer,
      observe: { totals, metrics },
      logger: logger.child({ sessionId }),
    });
    sockets.set(sessionId, ws);
    connections.set(sessionId, { ...connection, provider: inference.providerFor?.(modal) ?? 'custom' });
    void connection.finished.then(() => {
      sockets.delete(sessionId);
      connections.delete(sessionId);
    });
  };

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const stopHeartbeat = startHeartbeat(() => sockets.values(), {
    intervalMs: config.vision.pingIntervalMs,
    timeoutMs: config.vision.peerTimeoutMs,
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  logger.info({ port, host: config.host }, 'listening');

  let closing: Promise<void> | undefined;
  const close = (deadlineMs = 8_000): Promise<void> => {
    closing ??= (async () => {
      const started = performance.now();
      accepting = false;
      stopHeartbeat();
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      // Every HTTP request in flight is answered before the process exits: Poke sends are
      // cancelled (none goes out afterwards) and answered as they ended, or 503.
      const requestsAnswered = pokes.cancelAll(Math.min(3_000, deadlineMs / 3)).then(() => drain(Math.min(1_000, deadlineMs / 8)));
      supervisor.send({ type: 'shutdown' });
      for (const ws of sockets.values()) ws.close(1001, 'server shutting down');
      const cut = setTimeout(() => {
        for (const ws of sockets.values()) ws.terminate();
      }, Math.min(CLOSE_HANDSHAKE_MS, deadlineMs / 2));
      const sessionsDone = Promise.all([...connections.values()].map((c) => c.finished));
      let timedOut = false;
      const deadline = new Promise<void>((resolve) =>
        setTimeout(() => {
          timedOut = true;
          resolve();
        }, deadlineMs).unref(),
      );
      await Promise.race([Promise.all([sessionsDone, requestsAnswered]), deadline]);
      clearTimeout(cut);
      if (timedOut) logger.warn({ open: connections.size }, 'shutdown deadline passed with sessions still closing');
      supervisor.stop();
      const unflushed = await captionSink.flush(Math.max(500, deadlineMs - (performance.now() - started)));
      if (unflushed > 0) logger.error({ unflushed, ...captionSink.stats() }, 'captions not written before shutdown');
      await workerWriter?.close();
      if (!deps.inference) await inference.close?.();
      if (!deps.pokeClient) await pokeClient.close();
      inspection?.stop();
      if (!deps.store) await store.close();
      server.closeAllConnections();
      await stopped;
      logger.info({}, 'stopped');
    })();
    return closing;
  };

  const sessionRef = (sessionId: string) => supervisor.system.get(sessionSystemId(sessionId)) as SessionRef | undefined;
  return {
    url,
    inspectorUrl: inspection?.url,
    port,
    supervisor,
    store,
    captionSink,
    connections: () => connections,
    session: sessionRef,
    close,
  };
}
