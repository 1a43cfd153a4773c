import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { connect, createServer as createNetServer, Socket, type AddressInfo, type SocketConstructorOpts } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import { asciiTextFrame, closeFrame, CloseCode, FrameReader, pongFrame, textFrame } from './websocket-frames.ts';

/**
 * The server end of a WebSocket (RFC 6455) for `/vision/stream`, built for a
 * socket that receives far more than it sends.
 *
 * Every connection reads into one shared buffer (`net.Socket`'s `onread`), so
 * a read allocates nothing; `FrameReader` copies each message out once, into
 * a pooled buffer it reuses unless the consumer keeps the message in it
 * (`FramePool.keep`). A general-purpose WebSocket library gets a fresh buffer
 * from Node for every read instead; at 15 fps × 40 KiB × 200 sessions that is
 * over 100 MB/s of short-lived external memory, and V8 answers it with one
 * mark-compact after another once the heap holds a few hundred sessions' state
 * (bench/RESULTS.md). Acks written while a read is handled go out as one write.
 *
 * No extension is negotiated: permessage-deflate would spend CPU on JPEG
 * frames, which barely compress.
 */

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const KEY_PATTERN = /^[+/0-9A-Za-z]{22}==$/;
/** An HTTP token (RFC 9110 §5.6.2): what each offered subprotocol must be (RFC 6455 §4.1). */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Shared by every connection: each read is parsed to the end before the next one lands. */
const READ_BUFFER_BYTES = 64 * 1024;
const readBuffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);

/** How long a peer gets to answer our close frame before its socket is cut. */
const DEFAULT_CLOSE_TIMEOUT_MS = 30_000;

export interface WebSocketHandlers {
  /** A binary message; its bytes are lent until the next binary message has been delivered. */
  binary(bytes: Uint8Array): void;
  /** A text message (valid UTF-8), lent for the call only. */
  text(bytes: Uint8Array): void;
  /** Once, when the connection is gone: the peer's close code, or 1006 when it closed without one. */
  close(code: number): void;
  /** A handler threw while a read was handled: the connection is closed with 1011, the process goes on. */
  error?(error: unknown): void;
  /** Reading stopped because more than `maxBufferedBytes` wait to be sent to the peer. */
  throttled?(): void;
  /** What waited has been sent: reading goes on. */
  drained?(): void;
  /** The peer went over its rate: `closing` when it has stayed over it for `rateLimitCloseMs`. */
  rateLimited?(closing: boolean): void;
}

/** Per-connection rate limits (token buckets, one second of burst); reading pauses until back under. */
export interface RateLimits {
  /** WebSocket frames a second, control frames included. */
  framesPerSecond: number;
  /** Bytes read a second, frame headers included. */
  bytesPerSecond: number;
  /** A peer held over its rate this long without a break is closed with 1008. */
  closeAfterMs: number;
}

export interface WebSocketOptions {
  /** A message over this many bytes closes the connection with 1009. */
  maxMessageBytes: number;
  /**
   * Bytes queued for the peer (acks, replies, pongs: everything) past which the
   * socket stops reading until they are sent; default 64 KiB. The queue then
   * holds at most this plus what one read (64 KiB of input) makes the server say.
   */
  maxBufferedBytes?: number;
  rateLimits?: RateLimits;
  /** Subprotocols this server speaks, in its order of preference; none by default. */
  protocols?: readonly string[];
  /** TCP keepalive's first probe after this much idle time (0: off). */
  keepAliveMs?: number;
  closeTimeoutMs?: number;
  /** A monotonic clock in ms (default `performance.now`). */
  now?: () => number;
  /**
   * Runs the socket's teardown once the peer has closed its side (default: at
   * once). Closing a TCP socket costs the kernel tens of microseconds; when
   * thousands of peers go at once (a redeploy, a network cut), the server
   * passes its close queue so that they are closed one per event-loop turn
   * instead of all within one read of the event loop.
   */
  deferClose?: (task: () => void) => void;
}

type UpgradeRefusal = { status: 400 | 405; message: string };

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The subprotocols a client offers (RFC 6455 §4.1: unique tokens, comma
 * separated), [] when it offers none, or undefined when the header is malformed
 * (`chat superchat`, `ch@t`, an empty value or element, `chat, chat`).
 */
export function offeredProtocols(header: string | undefined): string[] | undefined {
  if (header === undefined) return [];
  const offered = header.split(',').map((element) => element.trim());
  if (offered.some((element) => !TOKEN.test(element))) return undefined;
  return new Set(offered).size === offered.length ? offered : undefined;
}

/** Why the request is not a WebSocket handshake this server can complete, if it is not. */
function upgradeRefusal(req: IncomingMessage): UpgradeRefusal | undefined {
  if (req.method !== 'GET') return { status: 405, message: 'Invalid HTTP method' };
  if (headerValue(req, 'upgrade')?.toLowerCase() !== 'websocket') return { status: 400, message: 'Invalid Upgrade header' };
  const key = headerValue(req, 'sec-websocket-key');
  if (key === undefined || !KEY_PATTERN.test(key)) return { status: 400, message: 'Missing or invalid Sec-WebSocket-Key header' };
  const version = headerValue(req, 'sec-websocket-version');
  if (version !== '13' && version !== '8') return { status: 400, message: 'Missing or invalid Sec-WebSocket-Version header' };
  if (offeredProtocols(req.headers['sec-websocket-protocol']) === undefined) {
    return { status: 400, message: 'Invalid Sec-WebSocket-Protocol header' };
  }
  return undefined;
}

/**
 * Writes the answer to a request that will not be upgraded and closes the
 * socket, whatever the peer does: an upgraded socket has no timeouts and lets
 * a peer keep its half open, so only `end` would leave the descriptor held for
 * as long as a peer that never sends its FIN likes.
 */
export function answerAndClose(socket: Duplex, response: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const cut = setTimeout(() => socket.destroy(), 1_000);
  cut.unref();
  socket.end(response, () => {
    clearTimeout(cut);
    socket.destroy();
  });
}

function refuse(socket: Duplex, { status, message }: UpgradeRefusal): void {
  const reason = status === 405 ? 'Method Not Allowed' : 'Bad Request';
  const extra = status === 400 ? 'Sec-WebSocket-Version: 13, 8\r\n' : '';
  answerAndClose(
    socket,
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n${extra}` +
      `Content-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`,
  );
}

/** The OS handle of a socket, which `ServerWebSocket` takes over (a Node internal: see `canTakeOverHandles`). */
export type HandleOf = (socket: Socket) => unknown;
export const socketHandle: HandleOf = (socket) => (socket as Socket & { _handle?: unknown })._handle;

/**
 * Whether this Node can hand a connection's handle to a new `net.Socket` that
 * reads into a buffer of ours (`_handle` and `onread`, internals this
 * transport relies on). Checked once at start over a loopback connection; the
 * server refuses to start without it.
 */
export async function canTakeOverHandles(handleOf: HandleOf = socketHandle): Promise<boolean> {
  const listener = createNetServer();
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = listener.address() as AddressInfo;
    const accepted = new Promise<Socket>((resolve) => listener.once('connection', resolve));
    const client = connect(port, '127.0.0.1');
    client.on('error', () => undefined);
    const socket = await accepted;
    try {
      const handle = handleOf(socket);
      if (!handle) return false;
      (socket as Socket & { _handle: unknown })._handle = null;
      socket.destroy();
      const taken = new Socket({ handle, onread: { buffer: Buffer.alloc(16), callback: () => true } } as SocketConstructorOpts);
      const works = typeof (taken as Socket & { _handle?: unknown })._handle === 'object';
      taken.destroy();
      return works;
    } finally {
      socket.destroy();
      client.destroy();
    }
  } catch {
    return false;
  } finally {
    listener.close();
  }
}

/**
 * Completes the handshake of an `upgrade` request, or answers 400/405 and
 * returns undefined. Call it from the server's `upgrade` event, synchronously;
 * the connection reads nothing until `start`.
 */
export function acceptWebSocket(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  options: WebSocketOptions,
): ServerWebSocket | undefined {
  const refusal = upgradeRefusal(req);
  if (refusal) {
    refuse(socket, refusal);
    return undefined;
  }
  const handle = socket instanceof Socket ? socketHandle(socket) : undefined;
  if (!(socket instanceof Socket) || !handle) {
    socket.destroy();
    return undefined;
  }
  const accept = createHash('sha1')
    .update(headerValue(req, 'sec-websocket-key') + GUID)
    .digest('base64');
  // The first protocol the client offers that this server speaks, if any (RFC 6455 §4.2.2).
  const offered = offeredProtocols(req.headers['sec-websocket-protocol']) ?? [];
  const protocol = offered.find((p) => options.protocols?.includes(p));
  const response =
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept}\r\n${protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : ''}\r\n`;
  return new ServerWebSocket(socket, head, response, options);
}

/**
 * One accepted connection. It takes the socket's handle over from the HTTP
 * server's socket object (which lets go of it) and reads into the shared buffer.
 *
 * Everything the server queues for the peer counts against one bound
 * (`maxBufferedBytes`), whatever the message: acks, error replies, pongs. Past
 * it the socket stops reading, so TCP backpressure reaches a peer that sends
 * without reading, until the queue has drained. Rate limits pause reading the
 * same way (see `RateLimits`).
 */
export class ServerWebSocket {
  private socket: Socket | undefined;
  private readonly reader: FrameReader;
  private handlers: WebSocketHandlers | undefined;
  /** ASCII frames written while a read is handled, sent as one write when it ends. */
  private batch = '';
  private batchCallbacks: (() => void)[] = [];
  private inRead = false;
  private closeSent = false;
  private closeCode: number = CloseCode.abnormal;
  private closeTimer: NodeJS.Timeout | undefined;
  private finished = false;
  private readonly closeTimeoutMs: number;
  private readonly maxBufferedBytes: number;
  private readonly limits: RateLimits | undefined;
  private readonly keepAliveMs: number;
  private readonly now: () => number;
  private readonly deferClose: (task: () => void) => void;
  /** The HTTP server's socket object, until `start` takes its handle over. */
  private upgraded: Socket | undefined;
  private head: Buffer;
  private readonly response: string;

  // Why reading is paused: the handler asked, the queue is over its bound, the peer is over its rate.
  private pausedByHandler = false;
  private backpressure = false;
  private rateLimited = false;
  private readPaused = false;
  // Token buckets (may run negative: the debt is waited out before reading again).
  private frameCredit = 0;
  private byteCredit = 0;
  private creditAt = 0;
  /** What arrived while over the rate, not read yet (a copy: the read buffer is shared). */
  private pending: Buffer | null = null;
  private limitedSince: number | null = null;
  private rateTimer: NodeJS.Timeout | undefined;
  /** When anything last arrived from the peer (monotonic ms): what the heartbeat checks. */
  lastHeardAt: number;
  private lastPingAt: number;
  /** The data message the heartbeat last saw under way (`FrameReader.messagesStarted`), and since when. */
  private watchedMessage = 0;
  private watchedSince = 0;

  constructor(upgraded: Socket, head: Buffer, response: string, options: WebSocketOptions) {
    this.upgraded = upgraded;
    this.head = head;
    this.response = response;
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.maxBufferedBytes = options.maxBufferedBytes ?? 64 * 1024;
    this.limits = options.rateLimits;
    this.keepAliveMs = options.keepAliveMs ?? 0;
    this.now = options.now ?? (() => performance.now());
    this.deferClose = options.deferClose ?? ((task) => task());
    this.lastHeardAt = this.now();
    this.lastPingAt = this.lastHeardAt;
    if (this.limits) {
      this.frameCredit = this.limits.framesPerSecond;
      this.byteCredit = this.limits.bytesPerSecond;
      this.creditAt = this.lastHeardAt;
    }
    this.reader = new FrameReader(options.maxMessageBytes, {
      binary: (bytes) => {
        if (!this.closeSent) this.handlers?.binary(bytes);
      },
      text: (bytes) => {
        if (!this.closeSent) this.handlers?.text(bytes);
      },
      // A pong joins the acks of the read, as latin1 like them (one byte a char).
      ping: (payload) => {
        if (!this.closeSent) this.batch += pongFrame(payload).toString('latin1');
      },
      close: (code, reason) => {
        this.closeCode = code;
        if (!this.closeSent) this.close(code === CloseCode.noStatus ? undefined : code, reason);
        this.endOurSide();
      },
      // Like the peer's close, a protocol error ends our side once the close frame is out.
      fail: (code) => {
        this.close(code);
        this.endOurSide();
      },
    });
  }

  /** Bytes written and not yet handed to the kernel. */
  get bufferedAmount(): number {
    return (this.socket?.writableLength ?? 0) + this.batch.length;
  }

  /** Takes the connection over, sends the handshake's answer and starts reading. */
  start(handlers: WebSocketHandlers): void {
    const upgraded = this.upgraded as (Socket & { _handle: unknown }) | undefined;
    if (!upgraded) throw new Error('WebSocket already started');
    this.upgraded = undefined;
    this.handlers = handlers;
    const handle = upgraded._handle;
    // Bytes the HTTP server's socket read past the request, besides `head`.
    const early = upgraded.readableLength > 0 ? (upgraded.read() as Buffer | null) : null;
    // The old socket object lets go of the handle, so destroying it leaves the connection open;
    // the HTTP server no longer counts the connection, and `server.ts` closes sessions itself.
    upgraded._handle = null;
    upgraded.destroy();
    const socket = new Socket({
      handle,
      // The peer's FIN does not close our side at once: see `deferClose`.
      allowHalfOpen: true,
      onread: { buffer: readBuffer, callback: (bytes: number) => this.onRead(bytes) },
    } as SocketConstructorOpts);
    this.socket = socket;
    socket.setNoDelay(true);
    if (this.keepAliveMs > 0) socket.setKeepAlive(true, this.keepAliveMs);
    socket.on('error', () => socket.destroy());
    socket.on('end', () => this.deferClose(() => socket.destroy()));
    socket.on('close', () => this.onSocketClose());
    socket.on('drain', () => this.onDrain());
    socket.write(this.response, 'latin1');
    const head = early ? Buffer.concat([this.head, early]) : this.head;
    this.head = Buffer.alloc(0);
    if (head.length > 0) this.handleRead(head, 0, head.length);
  }

  /** Sends a text message; `callback` runs once it (and all before it) has been written out. */
  send(text: string, callback?: () => void): void {
    if (this.closeSent || !this.socket) return;
    if (Buffer.byteLength(text) !== text.length) {
      this.write(textFrame(text), callback);
      return;
    }
    this.batch += asciiTextFrame(text);
    if (callback) this.batchCallbacks.push(callback);
    if (!this.inRead) this.flush();
  }

  /**
   * One heartbeat check (see `startHeartbeat`): a peer from which nothing has
   * arrived for `timeoutMs` is cut (its session closes as on any disconnect);
   * else it gets a ping when `intervalMs` have passed since the last one.
   * Returns false when the peer was cut.
   */
  heartbeat(now: number, intervalMs: number, timeoutMs: number): boolean {
    if (now - this.lastHeardAt >= timeoutMs) {
      this.terminate();
      return false;
    }
    // A message begun `timeoutMs` ago and still not ended holds its buffer however many pings come
    // meanwhile: the peer is cut as a silent one is.
    const started = this.reader.messagesStarted;
    if (!this.reader.midMessage || started !== this.watchedMessage) {
      this.watchedMessage = started;
      this.watchedSince = now;
    } else if (now - this.watchedSince >= timeoutMs) {
      this.terminate();
      return false;
    }
    // Quiet for a while: the reused message buffers go back to the pool (at most 8 MiB a connection otherwise).
    if (now - this.lastHeardAt >= IDLE_RELEASE_MS) this.reader.releaseBuffers();
    if (now - this.lastPingAt >= intervalMs && !this.closeSent) {
      this.lastPingAt = now;
      this.write(PING);
    }
    return true;
  }

  /** Stops reading: TCP backpressure reaches the client. */
  pause(): void {
    this.pausedByHandler = true;
    this.updateReading();
  }

  resume(): void {
    this.pausedByHandler = false;
    this.updateReading();
  }

  /** Starts the closing handshake; the socket is cut if the peer does not answer in time. */
  close(code?: number, reason = ''): void {
    if (this.closeSent || !this.socket) return;
    this.flush();
    this.closeSent = true;
    // Read on (whatever paused it) so the peer's close frame arrives.
    this.pausedByHandler = false;
    this.rateLimited = false;
    this.backpressure = false;
    clearTimeout(this.rateTimer);
    this.updateReading();
    this.socket.write(closeFrame(code, reason));
    this.closeTimer = setTimeout(() => this.terminate(), this.closeTimeoutMs);
    this.closeTimer.unref();
  }

  /** Cuts the connection without a closing handshake. */
  terminate(): void {
    this.socket?.destroy();
  }

  /** Sends our FIN once what is queued is out; the socket goes when the peer's FIN comes (or the close timer). */
  private endOurSide(): void {
    this.socket?.end();
  }

  /** Always goes on reading; `updateReading` pauses the socket when it must. */
  private onRead(bytes: number): boolean {
    this.lastHeardAt = this.now();
    if (this.pending) {
      // A read that was under way when reading paused: it waits behind the rest.
      this.pending = Buffer.concat([this.pending, readBuffer.subarray(0, bytes)]);
      if (this.limits) this.refill();
      this.overRate();
    } else {
      this.handleRead(readBuffer, 0, bytes);
    }
    return true;
  }

  /**
   * Reads `data` from `start` to `end` as far as the rate allows (whole frames,
   * at most the frames the bucket holds); the rest waits, copied, in `pending`
   * until there is credit again, so a flooding peer costs the event loop its
   * rate and not a whole read of tiny frames at once.
   */
  private handleRead(data: Buffer, start: number, end: number): void {
    let allowed = Infinity;
    if (this.limits) {
      this.refill();
      if (this.frameCredit < 1 || this.byteCredit < 0) {
        this.pending = Buffer.from(data.subarray(start, end));
        this.overRate();
        return;
      }
      allowed = Math.floor(this.frameCredit);
    }
    const framesBefore = this.reader.framesRead;
    let stopped = end;
    this.inRead = true;
    try {
      stopped = this.reader.feed(data, start, end, allowed);
    } catch (error) {
      // Whatever a message leads to, it never escapes the socket's callback and ends the process.
      this.handlers?.error?.(error);
      this.close(CloseCode.internalError);
      this.endOurSide();
    } finally {
      this.inRead = false;
      this.flush();
    }
    if (this.closeSent) return;
    if (this.limits) {
      this.frameCredit -= this.reader.framesRead - framesBefore;
      this.byteCredit -= stopped - start;
      if (stopped < end) {
        // The shared read buffer is overwritten by the next read: copy. A pending buffer is ours already.
        this.pending = data === readBuffer ? Buffer.from(data.subarray(stopped, end)) : data.subarray(stopped, end);
        this.overRate();
      } else if (this.frameCredit < 0 || this.byteCredit < 0) {
        this.overRate();
      } else {
        this.underRate();
      }
    }
    // Past the socket's own high-water mark a write has returned false, so 'drain' will come.
    if (!this.backpressure && this.bufferedAmount > this.maxBufferedBytes && this.socket?.writableNeedDrain) {
      this.backpressure = true;
      this.updateReading();
      this.handlers?.throttled?.();
    }
  }

  private refill(): void {
    const limits = this.limits as RateLimits;
    const now = this.now();
    const elapsed = (now - this.creditAt) / 1000;
    this.creditAt = now;
    this.frameCredit = Math.min(limits.framesPerSecond, this.frameCredit + elapsed * limits.framesPerSecond);
    this.byteCredit = Math.min(limits.bytesPerSecond, this.byteCredit + elapsed * limits.bytesPerSecond);
  }

  private underRate(): void {
    const limits = this.limits as RateLimits;
    // A peer held at its rate hovers near an empty bucket: only one that has let it fill halfway
    // is no longer over its rate (else the close after `closeAfterMs` would never come).
    if (this.frameCredit >= limits.framesPerSecond / 2 && this.byteCredit >= limits.bytesPerSecond / 2) this.limitedSince = null;
    if (this.rateLimited) {
      this.rateLimited = false;
      this.updateReading();
    }
  }

  /**
   * Over the rate: stop reading until there is credit for a frame again, or
   * close with 1008 once the peer has been over it for `closeAfterMs` without a break.
   */
  private overRate(): void {
    const limits = this.limits as RateLimits;
    const now = this.creditAt;
    this.limitedSince ??= now;
    const closing = now - this.limitedSince >= limits.closeAfterMs;
    this.handlers?.rateLimited?.(closing);
    if (closing) {
      this.pending = null;
      this.close(CloseCode.policyViolation, 'rate limit exceeded');
      return;
    }
    if (!this.rateLimited) {
      this.rateLimited = true;
      this.updateReading();
    }
    // With frames waiting, wait for a tenth of a second's worth of them, not one at a time.
    const wanted = this.pending ? Math.max(1, limits.framesPerSecond / 10) : 0;
    const creditMs = Math.max((wanted - this.frameCredit) / limits.framesPerSecond, -this.byteCredit / limits.bytesPerSecond) * 1000;
    const waitMs = Math.min(creditMs, this.limitedSince + limits.closeAfterMs - now);
    clearTimeout(this.rateTimer);
    this.rateTimer = setTimeout(() => {
      if (this.closeSent) return;
      this.refill();
      const pending = this.pending;
      if (pending) {
        this.pending = null;
        this.handleRead(pending, 0, pending.length);
      } else if (this.frameCredit >= 0 && this.byteCredit >= 0) {
        this.underRate();
      } else {
        this.overRate();
      }
    }, Math.max(1, Math.ceil(waitMs)));
    this.rateTimer.unref();
  }

  private onDrain(): void {
    if (!this.backpressure || this.bufferedAmount > 0) return;
    this.backpressure = false;
    this.updateReading();
    this.handlers?.drained?.();
  }

  private updateReading(): void {
    const paused = this.pausedByHandler || this.backpressure || this.rateLimited;
    if (paused === this.readPaused || !this.socket) return;
    this.readPaused = paused;
    if (paused) this.socket.pause();
    else this.socket.resume();
  }

  private flush(): void {
    if (this.batch.length === 0 || !this.socket) return;
    const callbacks = this.batchCallbacks;
    const batch = this.batch;
    this.batch = '';
    this.batchCallbacks = [];
    if (callbacks.length === 0) this.socket.write(batch, 'latin1');
    else this.socket.write(batch, 'latin1', () => callbacks.forEach((callback) => callback()));
  }

  private write(frame: Buffer, callback?: () => void): void {
    this.flush();
    if (callback) this.socket?.write(frame, callback);
    else this.socket?.write(frame);
  }

  private onSocketClose(): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.closeTimer);
    clearTimeout(this.rateTimer);
    this.handlers?.close(this.closeCode);
    this.reader.dispose();
  }
}

const PING = Buffer.from([0x89, 0x00]);

/** A connection that sent nothing for this long gives its reused message buffers back. */
const IDLE_RELEASE_MS = 5_000;

export interface HeartbeatOptions {
  /** Each connection is pinged this often. */
  intervalMs: number;
  /** A connection from which nothing (pong, frame, anything) arrived for this long is cut. */
  timeoutMs: number;
  /** A monotonic clock in ms (default `performance.now`). */
  now?: () => number;
}

/**
 * Pings every connection every `intervalMs` and cuts the ones silent for
 * `timeoutMs` (a dead peer sends no FIN or RST: nothing else would notice it).
 * One timer for all connections, checking at least once a second. Returns a stop function.
 */
export function startHeartbeat(connections: () => Iterable<ServerWebSocket>, options: HeartbeatOptions): () => void {
  const now = options.now ?? (() => performance.now());
  const timer = setInterval(() => {
    const at = now();
    for (const ws of connections()) ws.heartbeat(at, options.intervalMs, options.timeoutMs);
  }, Math.max(10, Math.min(1_000, options.intervalMs, options.timeoutMs / 3)));
  timer.unref();
  return () => clearInterval(timer);
}
