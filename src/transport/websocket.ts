import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { Socket, type SocketConstructorOpts } from 'node:net';
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
}

export interface WebSocketOptions {
  /** A message over this many bytes closes the connection with 1009. */
  maxMessageBytes: number;
  closeTimeoutMs?: number;
}

type UpgradeRefusal = { status: 400 | 405; message: string };

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Why the request is not a WebSocket handshake this server can complete, if it is not. */
function upgradeRefusal(req: IncomingMessage): UpgradeRefusal | undefined {
  if (req.method !== 'GET') return { status: 405, message: 'Invalid HTTP method' };
  if (headerValue(req, 'upgrade')?.toLowerCase() !== 'websocket') return { status: 400, message: 'Invalid Upgrade header' };
  const key = headerValue(req, 'sec-websocket-key');
  if (key === undefined || !KEY_PATTERN.test(key)) return { status: 400, message: 'Missing or invalid Sec-WebSocket-Key header' };
  const version = headerValue(req, 'sec-websocket-version');
  if (version !== '13' && version !== '8') return { status: 400, message: 'Missing or invalid Sec-WebSocket-Version header' };
  return undefined;
}

function refuse(socket: Duplex, { status, message }: UpgradeRefusal): void {
  const reason = status === 405 ? 'Method Not Allowed' : 'Bad Request';
  const extra = status === 400 ? 'Sec-WebSocket-Version: 13, 8\r\n' : '';
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\nConnection: close\r\nContent-Type: text/plain\r\n${extra}` +
      `Content-Length: ${Buffer.byteLength(message)}\r\n\r\n${message}`,
  );
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
  const handle = (socket as Socket & { _handle?: unknown })._handle;
  if (!(socket instanceof Socket) || !handle) {
    socket.destroy();
    return undefined;
  }
  const accept = createHash('sha1')
    .update(headerValue(req, 'sec-websocket-key') + GUID)
    .digest('base64');
  // Like common servers, take the client's first subprotocol, if it offered any.
  const protocol = headerValue(req, 'sec-websocket-protocol')?.split(',')[0]?.trim();
  const response =
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${accept}\r\n${protocol ? `Sec-WebSocket-Protocol: ${protocol}\r\n` : ''}\r\n`;
  return new ServerWebSocket(socket, head, response, options);
}

/**
 * One accepted connection. It takes the socket's handle over from the HTTP
 * server's socket object (which lets go of it) and reads into the shared buffer.
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
  /** The HTTP server's socket object, until `start` takes its handle over. */
  private upgraded: Socket | undefined;
  private head: Buffer;
  private readonly response: string;

  constructor(upgraded: Socket, head: Buffer, response: string, options: WebSocketOptions) {
    this.upgraded = upgraded;
    this.head = head;
    this.response = response;
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS;
    this.reader = new FrameReader(options.maxMessageBytes, {
      binary: (bytes) => {
        if (!this.closeSent) this.handlers?.binary(bytes);
      },
      text: (bytes) => {
        if (!this.closeSent) this.handlers?.text(bytes);
      },
      ping: (payload) => {
        if (!this.closeSent) this.write(pongFrame(payload));
      },
      close: (code, reason) => {
        this.closeCode = code;
        if (this.closeSent) {
          this.socket?.end();
          return;
        }
        this.close(code === CloseCode.noStatus ? undefined : code, reason);
        this.socket?.end();
      },
      // Like the peer's close, a protocol error ends our side once the close frame is out.
      fail: (code) => {
        this.close(code);
        this.socket?.end();
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
      onread: { buffer: readBuffer, callback: (bytes: number) => this.onRead(bytes) },
    } as SocketConstructorOpts);
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    socket.on('close', () => this.onSocketClose());
    socket.write(this.response, 'latin1');
    const head = early ? Buffer.concat([this.head, early]) : this.head;
    this.head = Buffer.alloc(0);
    if (head.length > 0) this.handleRead(head, head.length);
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

  /** Stops reading: TCP backpressure reaches the client. */
  pause(): void {
    this.socket?.pause();
  }

  resume(): void {
    this.socket?.resume();
  }

  /** Starts the closing handshake; the socket is cut if the peer does not answer in time. */
  close(code?: number, reason = ''): void {
    if (this.closeSent || !this.socket) return;
    this.flush();
    this.closeSent = true;
    this.socket.resume();
    this.socket.write(closeFrame(code, reason));
    this.closeTimer = setTimeout(() => this.terminate(), this.closeTimeoutMs);
    this.closeTimer.unref();
  }

  /** Cuts the connection without a closing handshake. */
  terminate(): void {
    this.socket?.destroy();
  }

  /** Always goes on reading; a handler that wants a pause calls `pause`. */
  private onRead(bytes: number): boolean {
    this.handleRead(readBuffer, bytes);
    return true;
  }

  private handleRead(data: Buffer, length: number): void {
    this.inRead = true;
    try {
      this.reader.feed(data, 0, length);
    } finally {
      this.inRead = false;
      this.flush();
    }
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
    this.handlers?.close(this.closeCode);
    this.reader.dispose();
  }
}
