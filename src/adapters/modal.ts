import type { IncomingHttpHeaders } from 'node:http';
import type { Cls, ClsInstance, ModalClient, ModalClientParams } from 'modal';
import { z } from 'zod';
import { err, ok, type Result } from '../result.ts';
import {
  cleanCaption,
  secretScrubber,
  type Caption,
  type FrameChunk,
  type InferenceError,
  type InferencePort,
  type InferenceSession,
  type InferenceTarget,
  type OpenRequest,
} from './inference.ts';
import type { Logger } from './logger.ts';

type ModalSdk = typeof import('modal');

/** The SDK is loaded on the first session that has credentials: a server without Modal never pays for it. */
let sdkLoading: Promise<ModalSdk> | undefined;
const loadSdk = (): Promise<ModalSdk> => (sdkLoading ??= import('modal'));

const headerText = z.string().trim().min(1).max(512);

/** The Modal headers of a glasses upgrade request (SPEC §7). */
const modalHeaders = z.object({
  'x-modal-token-id': headerText.optional().catch(undefined),
  'x-modal-token-secret': headerText.optional().catch(undefined),
  'x-modal-app-name': headerText.optional().catch(undefined),
  'x-modal-class-name': headerText.optional().catch(undefined),
});

export interface HeaderTarget {
  target?: InferenceTarget;
  /** Why Modal headers that were sent are not used; safe to log (names headers, never values). */
  ignored?: string;
}

/**
 * Reads a credential pair from the upgrade headers. A pair is required: half a
 * pair is ignored, and so are app/class headers that come without one, so a
 * client can never point the server's own credentials at another app.
 */
export function modalTargetFromHeaders(headers: IncomingHttpHeaders): HeaderTarget {
  const h = modalHeaders.parse(headers);
  const tokenId = h['x-modal-token-id'];
  const tokenSecret = h['x-modal-token-secret'];
  if (tokenId === undefined || tokenSecret === undefined) {
    const sent = Object.entries(h)
      .filter(([, value]) => value !== undefined)
      .map(([name]) => name);
    if (sent.length === 0) return {};
    const why = tokenId === undefined && tokenSecret === undefined ? 'without a token pair' : 'with half a token pair';
    return { ignored: `${sent.join(', ')} ignored: sent ${why}` };
  }
  const target: InferenceTarget = { tokenId, tokenSecret };
  if (h['x-modal-app-name'] !== undefined) target.appName = h['x-modal-app-name'];
  if (h['x-modal-class-name'] !== undefined) target.className = h['x-modal-class-name'];
  return { target };
}

/** What `infer_chunk` must return; anything else is an inference error, never a crash. */
const chunkOutput = z.object({
  caption: z.string(),
  chunk_start_s: z.number().finite().optional(),
  chunk_end_s: z.number().finite().optional(),
  latency_ms: z.number().finite().nonnegative().optional(),
  tokens_generated: z.number().int().nonnegative().nullable().optional(),
});

const MAX_MESSAGE = 300;

export interface ModalInferenceOptions {
  /** The server's own pair (env); a connection may bring another (headers). */
  credentials: { tokenId: string; tokenSecret: string } | undefined;
  appName: string;
  className: string;
  /** Per chunk: the SDK call is abandoned after this long (VISION_INFERENCE_TIMEOUT_MS). */
  timeoutMs: number;
  /** For `close(session_id)` at disconnect. */
  closeTimeoutMs?: number;
  logger?: Logger;
  /** Clients kept for distinct credential pairs; the least recently used goes first. */
  maxClients?: number;
  /** Extra SDK client settings, e.g. `grpcMiddleware` (tests use it to stand in for Modal's control plane). */
  client?: Omit<ModalClientParams, 'tokenId' | 'tokenSecret'>;
  /**
   * A class found to take no `history` is called without it for this long
   * (ms, default 300 000); the next chunk after that tries `history` again, so
   * a redeployed class gets it back without a server restart.
   */
  legacyRecheckMs?: number;
  /** Milliseconds on a monotonic clock (tests pass a virtual one). */
  now?: () => number;
}

export interface ModalInference extends InferencePort {
  /** SDK clients alive now: one per credential pair in use, not one per session. */
  clients(): number;
  close(): void;
}

/** One SDK client (and its gRPC channel) per credential pair, with the classes it has looked up. */
interface SharedClient {
  client: ModalClient;
  classes: Map<string, Promise<Cls>>;
  /** Classes (`app/Class`) deployed before `history` was an argument, and when that was last seen (ms). */
  legacy: Map<string, number>;
}

/**
 * Python's answer when a deployment's `infer_chunk` itself predates the `history`
 * argument (`Cls.infer_chunk() takes 6 positional arguments but 7 were given`).
 * A TypeError raised anywhere else (inside the model) names another function
 * and is an inference error like any other.
 */
const NO_HISTORY_ARGUMENT = /\binfer_chunk\(\) takes \d+ positional arguments? but \d+ were given/;

/**
 * The inference port over the Modal JS SDK (SPEC §7): `cls.fromName` once per
 * client and class, one instance handle per session, `infer_chunk` per chunk,
 * `close(session_id)` at the end.
 *
 * Opening does not touch the network: the class is looked up in the
 * background and awaited by the first chunk, so a Modal that cannot be
 * reached shows up as an `inference_error` on every chunk until the session's
 * circuit opens, while a class that does not exist (or was deployed with an
 * SDK that cannot take CBOR) fails with kind `open-failed` and the session
 * goes degraded with that reason.
 */
export function createModalInference(options: ModalInferenceOptions): ModalInference {
  const maxClients = options.maxClients ?? 16;
  const closeTimeoutMs = options.closeTimeoutMs ?? 5_000;
  const legacyRecheckMs = options.legacyRecheckMs ?? 300_000;
  const now = options.now ?? (() => performance.now());
  const shared = new Map<string, SharedClient>();
  const sdkLogger = options.logger ? modalLogger(options.logger) : undefined;

  const clientFor = (sdk: ModalSdk, tokenId: string, tokenSecret: string): SharedClient => {
    const key = `${tokenId}\u0000${tokenSecret}`;
    let entry = shared.get(key);
    if (entry) {
      shared.delete(key); // re-inserted below: Map order is the LRU order
    } else {
      entry = {
        client: new sdk.ModalClient({ ...options.client, ...(sdkLogger ? { logger: sdkLogger } : {}), tokenId, tokenSecret }),
        classes: new Map(),
        legacy: new Map(),
      };
      if (shared.size >= maxClients) {
        const [oldestKey, oldest] = shared.entries().next().value as [string, SharedClient];
        shared.delete(oldestKey);
        oldest.client.close();
      }
    }
    shared.set(key, entry);
    return entry;
  };

  return {
    async open(request: OpenRequest): Promise<Result<InferenceSession, InferenceError>> {
      const pair = request.target ?? options.credentials;
      if (!pair) return err({ kind: 'no-credentials', message: 'no Modal credentials' });
      const appName = request.target?.appName ?? options.appName;
      const className = request.target?.className ?? options.className;
      const scrub = secretScrubber([pair.tokenId, pair.tokenSecret]);
      let sdk: ModalSdk;
      let entry: SharedClient;
      try {
        sdk = await loadSdk();
        entry = clientFor(sdk, pair.tokenId, pair.tokenSecret);
      } catch (error) {
        return err({ kind: 'open-failed', message: scrub(messageOf(error)) });
      }
      const key = `${appName}/${className}`;
      const forget = (cls: Promise<Cls>) => {
        if (entry.classes.get(key) === cls) entry.classes.delete(key);
      };
      const lookup = (): Promise<Cls> => {
        let cls = entry.classes.get(key);
        if (!cls) {
          cls = entry.client.cls.fromName(appName, className);
          entry.classes.set(key, cls);
          // A failed lookup is forgotten, so the next chunk asks again.
          const pending = cls;
          pending.catch(() => forget(pending));
        }
        return cls;
      };
      void lookup().catch(() => undefined); // warm up; the first chunk awaits the same promise
      return ok(
        modalSession({
          sdk,
          lookup,
          forget,
          sessionId: request.sessionId,
          prompt: request.prompt,
          legacy: {
            has: () => {
              const seen = entry.legacy.get(key);
              return seen !== undefined && now() - seen < legacyRecheckMs;
            },
            add: () => {
              const known = entry.legacy.has(key);
              entry.legacy.set(key, now());
              if (known) return;
              options.logger?.warn(
                { app: appName, class: className, recheckMs: legacyRecheckMs },
                'the deployed Modal class takes no caption history: chunks go without it until it is redeployed from modal/',
              );
            },
            taken: () => {
              if (!entry.legacy.delete(key)) return;
              options.logger?.info({ app: appName, class: className }, 'the deployed Modal class takes caption history again');
            },
          },
          timeoutMs: options.timeoutMs,
          closeTimeoutMs,
          scrub,
          ...(options.logger ? { logger: options.logger } : {}),
        }),
      );
    },
    clients: () => shared.size,
    close() {
      for (const entry of shared.values()) entry.client.close();
      shared.clear();
    },
  };
}

interface ModalSessionParts {
  sdk: ModalSdk;
  lookup: () => Promise<Cls>;
  /** Drops this cached class (if still cached) so the next lookup asks Modal again. */
  forget: (cls: Promise<Cls>) => void;
  sessionId: string;
  prompt: string;
  /**
   * Whether this class predates the `history` argument (then it is left out),
   * marking it so, and clearing the mark when a call with history went through.
   */
  legacy: { has(): boolean; add(): void; taken(): void };
  timeoutMs: number;
  closeTimeoutMs: number;
  scrub: (text: string) => string;
  logger?: Logger;
}

function modalSession(parts: ModalSessionParts): InferenceSession {
  const { sdk, sessionId, prompt, scrub } = parts;
  let cls: Promise<Cls> | undefined;
  let instance: Promise<ClsInstance> | undefined;
  let inferred = false;

  const instanceHandle = (): Promise<ClsInstance> => {
    if (instance) return instance;
    cls = parts.lookup();
    const pending = cls.then((c) => c.instance());
    instance = pending;
    // A failed lookup is not kept: the next chunk tries again.
    pending.catch(() => {
      if (instance === pending) instance = undefined;
    });
    return pending;
  };
  /** After a transport failure the handle may be stale: this session and the shared cache look up again. */
  const dropHandle = () => {
    if (cls) parts.forget(cls);
    cls = undefined;
    instance = undefined;
  };

  return {
    async infer(chunk: FrameChunk, signal: AbortSignal): Promise<Result<Caption, InferenceError>> {
      const started = performance.now();
      const history = chunk.history ?? [];
      // infer_chunk(frames, start_ts_s, end_ts_s, prompt, session_id[, history]): the session's
      // history, oldest first, when it has one; the deployment keeps none of its own.
      const args = (withHistory: boolean) => {
        const base: unknown[] = [chunk.frames, chunk.startS, chunk.endS, prompt, sessionId];
        return withHistory ? [...base, [...history]] : base;
      };
      const withHistory = history.length > 0 && !parts.legacy.has();
      let method: ReturnType<ClsInstance['method']>;
      let call: Promise<unknown>;
      try {
        method = (await instanceHandle()).method('infer_chunk');
        inferred = true;
        // The SDK encodes the arguments before its first await: the frames are not read after this line.
        call = method.remote(args(withHistory));
      } catch (error) {
        return err(describe(sdk, error, scrub));
      }
      let settled = await within(call, signal, parts.timeoutMs);
      let sentHistory = withHistory;
      if (withHistory && settled.status === 'failed' && settled.error instanceof sdk.RemoteError && NO_HISTORY_ARGUMENT.test(messageOf(settled.error))) {
        // A deployment from before `history`: called again without it, as it is until the next recheck.
        parts.legacy.add();
        sentHistory = false;
        try {
          call = method.remote(args(false));
        } catch (error) {
          return err(describe(sdk, error, scrub));
        }
        settled = await within(call, signal, Math.max(1, parts.timeoutMs - (performance.now() - started)));
      }
      if (sentHistory && settled.status === 'done') parts.legacy.taken();
      if (settled.status === 'aborted') return err({ kind: 'remote', message: 'cancelled' });
      if (settled.status === 'timeout') return err({ kind: 'timeout', message: 'inference timed out' });
      if (settled.status === 'failed') {
        const failure = describe(sdk, settled.error, scrub);
        // The model raised or timed out: the handle is fine. Anything else may be a stale one.
        if (!(settled.error instanceof sdk.RemoteError || settled.error instanceof sdk.FunctionTimeoutError)) dropHandle();
        return err(failure);
      }
      const output = chunkOutput.safeParse(settled.value);
      if (!output.success) {
        const issue = output.error.issues[0];
        const where = issue && issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
        return err({ kind: 'invalid-output', message: `invalid inference output: ${where}${issue?.message ?? 'not a caption'}` });
      }
      const o = output.data;
      return ok({
        caption: cleanCaption(o.caption),
        chunkStartS: o.chunk_start_s ?? chunk.startS,
        chunkEndS: o.chunk_end_s ?? chunk.endS,
        latencyMs: o.latency_ms ?? Math.round(performance.now() - started),
        tokensGenerated: o.tokens_generated ?? null,
      });
    },

    async close(): Promise<void> {
      // Nothing to forget remotely for a session that never reached the model.
      if (!inferred || !instance) return;
      try {
        const call = (await instance).method('close').remote([sessionId]);
        const settled = await within(call, new AbortController().signal, parts.closeTimeoutMs);
        if (settled.status !== 'done') {
          parts.logger?.warn(
            { sessionId, err: settled.status === 'failed' ? scrub(messageOf(settled.error)) : settled.status },
            'Modal close(session_id) did not finish',
          );
        }
      } catch (error) {
        parts.logger?.warn({ sessionId, err: scrub(messageOf(error)) }, 'Modal close(session_id) failed');
      }
    },
  };
}

type Settled<T> =
  | { status: 'done'; value: T }
  | { status: 'failed'; error: unknown }
  | { status: 'timeout' }
  | { status: 'aborted' };

/**
 * Waits for an SDK call at most `timeoutMs` or until `signal` aborts. The SDK's
 * `remote()` takes no signal: an abandoned call's long poll ends on its own
 * when Modal answers; its answer is dropped.
 */
function within<T>(call: Promise<T>, signal: AbortSignal, timeoutMs: number): Promise<Settled<T>> {
  if (signal.aborted) {
    call.catch(() => undefined);
    return Promise.resolve({ status: 'aborted' });
  }
  return new Promise((resolve) => {
    const finish = (settled: Settled<T>) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(settled);
    };
    const onAbort = () => finish({ status: 'aborted' });
    const timer = setTimeout(() => finish({ status: 'timeout' }), timeoutMs);
    signal.addEventListener('abort', onAbort, { once: true });
    call.then(
      (value) => finish({ status: 'done', value }),
      (error: unknown) => finish({ status: 'failed', error }),
    );
  });
}

/** Maps an SDK or transport failure to the port's error kinds, with a message safe to show the client. */
function describe(sdk: ModalSdk, error: unknown, scrub: (text: string) => string): InferenceError {
  const message = scrub(messageOf(error));
  // A class that is not there (or cannot take calls from this SDK) will not appear by retrying at once.
  if (error instanceof sdk.NotFoundError || error instanceof sdk.InvalidError) return { kind: 'open-failed', message };
  if (error instanceof sdk.FunctionTimeoutError) return { kind: 'timeout', message };
  if (error instanceof sdk.RemoteError) return { kind: 'remote', message };
  return { kind: 'remote', message: `modal: ${message}` };
}

function messageOf(error: unknown): string {
  // gRPC adds an empty "Resolution note:" to connection errors.
  const text = (error instanceof Error ? error.message : String(error)).replace(/\s*Resolution note:\s*$/, '');
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}…` : text;
}

/** Replaces each secret in a text; error texts of the SDK and of Modal are not trusted to leave them out. */
/** The SDK logs through ours: its `(message, key, value, ...)` pairs become fields. */
function modalLogger(logger: Logger) {
  const child = logger.child({ component: 'modal' });
  const fields = (args: unknown[]) => {
    const out: Record<string, unknown> = {};
    for (let i = 0; i + 1 < args.length; i += 2) {
      const value = args[i + 1];
      out[String(args[i])] = value instanceof Error ? value.message : value;
    }
    return out;
  };
  return {
    debug: (message: string, ...args: unknown[]) => child.debug(fields(args), message),
    info: (message: string, ...args: unknown[]) => child.info(fields(args), message),
    warn: (message: string, ...args: unknown[]) => child.warn(fields(args), message),
    error: (message: string, ...args: unknown[]) => child.error(fields(args), message),
  };
}
