import { Decoder, Encoder } from 'cbor-x';
import { ClientError, Status, type CallOptions, type ClientMiddleware, type ClientMiddlewareCall } from 'nice-grpc-common';

/**
 * Stands in for Modal's control plane inside the real Modal JS SDK, through the
 * SDK's own `grpcMiddleware` hook: the SDK builds every request as it would for
 * Modal (auth metadata, `cls.fromName`, CBOR-encoded `[args, kwargs]` in
 * `FunctionMap`, output long polls) and this middleware answers the RPCs
 * instead of the network. What is faked: the gRPC transport and Modal's
 * servers (no protobuf bytes cross a socket, no GPU runs). What is real:
 * everything the SDK does with our frames and with the answers. The hook runs
 * in front of the SDK's own auth and retry middleware, so those two are not
 * exercised here: the closed-port test drives them over a real channel.
 */

/** CBOR settings of the SDK, so the fake reads and writes what a deployed class would. */
const cbor = { mapsAsObjects: true, useRecords: false, tagUint8Array: false, useTag259ForMaps: false } as const;
const encoder = new Encoder(cbor);
const decoder = new Decoder(cbor);

const DATA_FORMAT_CBOR = 4;
const GENERIC_STATUS_SUCCESS = 1;
const GENERIC_STATUS_FAILURE = 2;

/** One `infer_chunk` call as the deployed class would receive it. */
export interface ChunkCall {
  frames: Uint8Array[];
  startS: number;
  endS: number;
  prompt: string;
  sessionId: string;
  /** The sixth argument (the session's captions, oldest first); undefined when not sent. */
  history: string[] | undefined;
}

/** Raised from `answer` to make the remote method fail, as a Python exception would. */
export class RemoteException extends Error {}

export interface FunctionGetCall {
  appName: string;
  objectTag: string;
}

const methodHandle = { supportedInputFormats: [DATA_FORMAT_CBOR] };

export class FakeModalControlPlane {
  /** Classes that answer `FunctionGet`, as `app/Class`. */
  readonly deployed = new Set(['foresight-gemma3-vlm/Gemma3VLMSession']);
  /** While true every RPC fails as an unreachable server does (UNAVAILABLE). */
  unavailable = false;
  /** A deployment from before `history`: a sixth argument fails as Python's TypeError does. */
  legacy = false;
  /** What `infer_chunk` returns (any value; it is CBOR-encoded as the output); throw RemoteException to fail. */
  answer: (call: ChunkCall) => unknown = (call) => ({
    caption: `A person looks at ${call.frames.length} frames.`,
    chunk_start_s: call.startS,
    chunk_end_s: call.endS,
    latency_ms: 41.5,
    tokens_generated: 9,
  });

  readonly functionGets: FunctionGetCall[] = [];
  readonly chunks: ChunkCall[] = [];
  readonly closes: string[] = [];
  private readonly outputs = new Map<string, Promise<unknown>>();
  private readonly releases: Array<() => void> = [];
  private readonly waiters: Array<() => void> = [];
  private nextId = 0;

  readonly middleware: ClientMiddleware = this.handle.bind(this) as ClientMiddleware;

  /** Resolves once `predicate` holds, checked after every RPC the fake answers. */
  until(predicate: () => boolean, timeoutMs = 15_000): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('fake Modal: condition not met in time')), timeoutMs);
      const check = () => {
        if (predicate()) {
          clearTimeout(timer);
          resolve();
        } else this.waiters.push(check);
      };
      this.waiters.push(check);
    });
  }

  /** Answers from now on never come until `releaseAll` (a model that hangs). */
  hang(): void {
    this.answer = () =>
      new Promise((resolve) => this.releases.push(() => resolve({ caption: 'released late' })));
  }

  releaseAll(): void {
    for (const release of this.releases.splice(0)) release();
  }

  private notify(): void {
    for (const check of this.waiters.splice(0)) check();
  }

  // eslint-disable-next-line require-yield -- unary calls only: the answer is the generator's return value
  private async *handle<Request, Response>(
    call: ClientMiddlewareCall<Request, Response>,
    options: CallOptions,
  ): AsyncGenerator<Response, Response | void, undefined> {
    try {
      options.signal?.throwIfAborted();
      return (await this.respond(call.method.path, call.request as Record<string, unknown>)) as Response;
    } finally {
      setImmediate(() => this.notify());
    }
  }

  private async respond(path: string, request: Record<string, unknown>): Promise<unknown> {
    const method = path.slice(path.lastIndexOf('/') + 1);
    if (this.unavailable) throw new ClientError(path, Status.UNAVAILABLE, 'fake Modal is down');
    switch (method) {
      case 'FunctionGet': {
        const appName = String(request.appName);
        const objectTag = String(request.objectTag);
        this.functionGets.push({ appName, objectTag });
        const cls = objectTag.replace(/\.\*$/, '');
        if (!this.deployed.has(`${appName}/${cls}`)) throw new ClientError(path, Status.NOT_FOUND, 'not found');
        return {
          functionId: `fu-${appName}-${cls}`,
          handleMetadata: {
            supportedInputFormats: [DATA_FORMAT_CBOR],
            methodHandleMetadata: { infer_chunk: methodHandle, close: methodHandle },
          },
        };
      }
      case 'FunctionMap':
        return this.map(request);
      case 'FunctionGetOutputs': {
        const output = this.outputs.get(String(request.functionCallId));
        if (!output) throw new ClientError(path, Status.NOT_FOUND, 'no such function call');
        return { outputs: [await output], lastEntryId: '1-0' };
      }
      default:
        throw new ClientError(path, Status.UNIMPLEMENTED, `fake Modal has no ${method}`);
    }
  }

  private map(request: Record<string, unknown>): unknown {
    const pipelined = request.pipelinedInputs as Array<{ input: { args: Uint8Array; methodName: string; dataFormat: number } }>;
    const input = pipelined[0]?.input;
    if (!input || input.dataFormat !== DATA_FORMAT_CBOR) throw new Error('fake Modal: expected one CBOR input');
    const [args] = decoder.decode(input.args) as [unknown[], Record<string, unknown>];
    const id = `fc-${++this.nextId}`;
    let value: Promise<unknown>;
    if (input.methodName === 'close') {
      this.closes.push(String(args[0]));
      value = Promise.resolve(null);
    } else {
      const [frames, startS, endS, prompt, sessionId, history] = args as [Uint8Array[], number, number, string, string, string[] | undefined];
      const chunk: ChunkCall = { frames, startS, endS, prompt, sessionId, history };
      this.chunks.push(chunk);
      value =
        this.legacy && args.length > 5
          ? Promise.reject(
              new RemoteException(`TypeError: Gemma3VLMSession.infer_chunk() takes 6 positional arguments but ${args.length + 1} were given`),
            )
          : Promise.resolve().then(() => this.answer(chunk));
    }
    this.outputs.set(
      id,
      value.then(
        (result) => ({ result: { status: GENERIC_STATUS_SUCCESS, data: encoder.encode(result) }, dataFormat: DATA_FORMAT_CBOR }),
        (error: unknown) => {
          if (!(error instanceof RemoteException)) throw error;
          return { result: { status: GENERIC_STATUS_FAILURE, exception: error.message }, dataFormat: DATA_FORMAT_CBOR };
        },
      ),
    );
    return { functionCallId: id, functionCallJwt: `jwt-${id}`, pipelinedInputs: [{ idx: 0, inputId: `in-${id}`, inputJwt: `ij-${id}` }] };
  }
}
