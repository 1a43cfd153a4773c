import { fileURLToPath } from 'node:url';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { openSqliteStore, type SqliteStoreOptions } from './sqlite-store.ts';
import { StartupError } from '../startup-error.ts';
import type { Store } from './store.ts';

/**
 * The embedded store in a worker thread of its own (finding 9): every SQLite
 * call, and every wait for another process's lock (an operator's `sqlite3`
 * shell, a backup), happens off the event loop, so acks never wait for the
 * store. Calls are messages, answered in order; a call that fails (a locked or
 * full database) rejects with `StoreError`, which the routes answer with 503.
 */

/** The store methods a worker runs; everything in `Store` but `close`. */
const METHODS = [
  'insertBiometricWindow',
  'insertCaptionWindow',
  'insertCaptionWindows',
  'windowsSince',
  'insertIntervention',
  'interventionsSince',
  'claimTick',
  'claimNudge',
] as const satisfies ReadonlyArray<Exclude<keyof Store, 'close'>>;
type Method = (typeof METHODS)[number];

interface Call {
  id: number;
  method: Method | 'close';
  args: unknown[];
}
type Reply = { id: number; value: unknown } | { id: number; error: { message: string; code?: string } };

/** A store call that failed in the worker: SQLite's message (`database is locked`, `database or disk is full`, …). */
export class StoreError extends Error {
  override name = 'StoreError';
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
  }
}

/** The store could not be opened at start: one line that says where and why. */
export class StoreOpenError extends StartupError {
  override name = 'StoreOpenError';
}

export interface WorkerStoreOptions {
  path: string;
  /** How long a write waits for another connection's lock before it fails (SQLite `busy_timeout`). */
  busyTimeoutMs?: number;
  migrationsDir?: string;
}

/** What the worker thread is started with. */
interface StoreWorkerData extends Omit<SqliteStoreOptions, 'now'> {
  role: 'foresight-store';
}

/**
 * Opens the embedded store in a worker thread; resolves once the migrations
 * have run. Rejects with `StoreOpenError` (`cannot open the database at
 * <path>: <reason>`) when the folder cannot be made, the file cannot be opened
 * or written, or another process holds its lock past the busy timeout.
 */
export async function openSqliteStoreInWorker(options: WorkerStoreOptions): Promise<Store & { applied: string[] }> {
  const self = fileURLToPath(import.meta.url);
  // The same file runs as the worker: its source (type-stripped by Node 22) or its build.
  const data: StoreWorkerData = {
    role: 'foresight-store',
    path: options.path,
    ...(options.busyTimeoutMs !== undefined ? { busyTimeoutMs: options.busyTimeoutMs } : {}),
    ...(options.migrationsDir ? { migrationsDir: options.migrationsDir } : {}),
  };
  // node:sqlite warns that it is experimental, once per thread.
  const worker = new Worker(self, { workerData: data, execArgv: ['--disable-warning=ExperimentalWarning'] });
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  let nextId = 1;
  let failure: Error | undefined;
  const failAll = (error: Error) => {
    failure = error;
    for (const { reject } of pending.values()) reject(error);
    pending.clear();
  };
  worker.on('message', (reply: Reply) => {
    const call = pending.get(reply.id);
    if (!call) return;
    pending.delete(reply.id);
    if ('error' in reply) call.reject(new StoreError(reply.error.message, reply.error.code));
    else call.resolve(reply.value);
  });
  worker.on('error', (error) => failAll(new StoreError(`store worker failed: ${error.message}`)));
  worker.on('exit', (code) => failAll(new StoreError(`store worker exited (${code})`)));

  const call = (method: Call['method'], args: unknown[]): Promise<unknown> => {
    if (failure) return Promise.reject(failure);
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject });
      worker.postMessage({ id, method, args } satisfies Call);
    });
  };

  let applied: string[];
  try {
    applied = (await call('open' as Method, [])) as string[];
  } catch (error) {
    await worker.terminate();
    throw new StoreOpenError(`cannot open the database at ${options.path}: ${(error as Error).message}`);
  }
  const store = Object.fromEntries(METHODS.map((method) => [method, (...args: unknown[]) => call(method, args)])) as unknown as Omit<
    Store,
    'close'
  >;
  let closing: Promise<void> | undefined;
  return {
    ...store,
    applied,
    close() {
      closing ??= call('close', [])
        .catch(() => undefined)
        .then(() => worker.terminate())
        .then(() => undefined);
      return closing;
    },
  };
}

/** The worker's side: opens the store on `open`, runs each call, answers in order. */
function serve(data: StoreWorkerData): void {
  const port = parentPort;
  if (!port) return;
  let store: ReturnType<typeof openSqliteStore> | undefined;
  port.on('message', async ({ id, method, args }: Call) => {
    try {
      let value: unknown;
      if ((method as string) === 'open') {
        store = openSqliteStore(data);
        value = store.applied;
      } else if (method === 'close') {
        store?.close();
        value = null;
      } else {
        if (!store) throw new Error('store not open');
        const fn = store[method] as (...a: unknown[]) => Promise<unknown>;
        value = await fn.apply(store, args);
      }
      port.postMessage({ id, value } satisfies Reply);
    } catch (error) {
      const e = error as { message?: string; code?: string };
      port.postMessage({ id, error: { message: e.message ?? String(error), ...(e.code ? { code: e.code } : {}) } } satisfies Reply);
    }
  });
}

if (!isMainThread && (workerData as StoreWorkerData | undefined)?.role === 'foresight-store') serve(workerData as StoreWorkerData);
