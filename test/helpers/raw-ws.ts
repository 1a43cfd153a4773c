import { connect, type Socket } from 'node:net';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/**
 * A WebSocket client by hand over a raw TCP socket: it sends the handshake and
 * whatever bytes a test writes, and reads only when told to (a peer that never
 * reads is the point of some tests).
 */
export class RawWebSocket {
  readonly socket: Socket;
  /** The first 64 KiB received (the handshake's answer and what follows) and the last 64 KiB. */
  received = Buffer.alloc(0);
  tail = Buffer.alloc(0);
  receivedBytes = 0;
  closed = false;
  private readonly opened: Promise<void>;

  private constructor(port: number, path: string, headers: Record<string, string>) {
    this.socket = connect(port, '127.0.0.1');
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => (this.closed = true));
    this.socket.on('data', (chunk: Buffer) => {
      this.receivedBytes += chunk.length;
      if (this.received.length < 65_536) this.received = Buffer.concat([this.received, chunk]);
      this.tail = Buffer.concat([this.tail, chunk]).subarray(-65_536);
    });
    const lines = Object.entries({
      Host: 'localhost',
      Upgrade: 'websocket',
      Connection: 'Upgrade',
      'Sec-WebSocket-Key': KEY,
      'Sec-WebSocket-Version': '13',
      ...headers,
    }).map(([k, v]) => `${k}: ${v}\r\n`);
    this.socket.write(`GET ${path} HTTP/1.1\r\n${lines.join('')}\r\n`);
    this.opened = new Promise((resolve, reject) => {
      const check = () => {
        if (this.received.includes('\r\n\r\n')) {
          if (this.received.toString('latin1').startsWith('HTTP/1.1 101')) resolve();
          else reject(new Error(`handshake refused: ${this.received.toString('latin1').split('\r\n')[0]}`));
        } else if (this.closed) reject(new Error('closed during the handshake'));
        else setTimeout(check, 2);
      };
      check();
    });
  }

  static async open(url: string, options: { path?: string; headers?: Record<string, string> } = {}): Promise<RawWebSocket> {
    const client = new RawWebSocket(Number(new URL(url).port), options.path ?? '/vision/stream', options.headers ?? {});
    await client.opened;
    return client;
  }

  /** Stops reading: the kernel buffers fill, then the server's writes back up. */
  stopReading(): void {
    this.socket.pause();
  }

  /** Writes until the kernel pushes back (the server stopped reading) or `maxBytes` are written; resolves with the bytes written. */
  async flood(frame: Buffer, maxBytes: number): Promise<number> {
    let written = 0;
    while (written < maxBytes && !this.closed) {
      const room = this.socket.write(frame);
      written += frame.length;
      if (!room) {
        const drained = await Promise.race([
          new Promise<boolean>((resolve) => this.socket.once('drain', () => resolve(true))),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 300)),
        ]);
        if (!drained) return written;
      }
    }
    return written;
  }

  /** The number of the last ack received (`{"frame":N,…}`), 0 before any. */
  lastAckedFrame(): number {
    const matches = [...this.tail.toString('latin1').matchAll(/\{"frame":(\d+),/g)];
    return matches.length === 0 ? 0 : Number(matches.at(-1)![1]);
  }

  /** The close code of a close frame the server sent, if one arrived. */
  closeCode(): number | undefined {
    const at = this.tail.lastIndexOf(Buffer.from([0x88]));
    return at >= 0 && at + 4 <= this.tail.length && (this.tail[at + 1] as number) >= 2 ? this.tail.readUInt16BE(at + 2) : undefined;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
