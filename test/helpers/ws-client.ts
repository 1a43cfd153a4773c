import { WebSocket, type RawData } from 'ws';

export interface Ack {
  frame: number;
  bytes: number;
  caption?: string;
  latency_ms?: number;
  chunk_start_s?: number;
  chunk_end_s?: number;
  tokens_generated?: number;
  window_id?: string;
  inference_error?: string;
  error?: string;
}

/** A glasses client for tests: collects every JSON message and lets a test await conditions on them. */
export class GlassesClient {
  readonly messages: Ack[] = [];
  /** The messages that are acks (not protocol errors), in arrival order. */
  readonly acks: Ack[] = [];
  closeCode: number | undefined;
  closeReason = '';
  private readonly waiters: Array<() => void> = [];
  readonly opened: Promise<void>;
  readonly closed: Promise<number>;

  readonly ws: WebSocket;

  constructor(ws: WebSocket) {
    this.ws = ws;
    this.opened = new Promise((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
    });
    this.closed = new Promise((resolve) => {
      ws.once('close', (code, reason) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        this.notify();
        resolve(code);
      });
    });
    ws.on('message', (data: RawData) => {
      const message = JSON.parse(data.toString()) as Ack;
      this.messages.push(message);
      if (message.error === undefined) this.acks.push(message);
      this.notify();
    });
    ws.on('error', () => undefined);
  }

  static async connect(baseUrl: string, options: { path?: string; headers?: Record<string, string> } = {}) {
    const url = `${baseUrl.replace(/^http/, 'ws')}${options.path ?? '/vision/stream'}`;
    const client = new GlassesClient(new WebSocket(url, { headers: options.headers }));
    await client.opened;
    return client;
  }

  send(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** Resolves when `predicate` holds over the messages so far; fails if the socket closes first. */
  until(predicate: (messages: Ack[]) => boolean, what = 'condition'): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate(this.messages)) resolve();
        else if (this.closeCode !== undefined) reject(new Error(`socket closed (${this.closeCode}) before ${what}`));
        else this.waiters.push(check);
      };
      check();
    });
  }

  untilAcks(count: number): Promise<void> {
    return this.until(() => this.acks.length >= count, `${count} acks`);
  }

  /** Sends a small frame after each ack until an ack satisfies `predicate`; returns that ack. */
  async sendUntil(predicate: (ack: Ack) => boolean, bytes = 8): Promise<Ack> {
    for (let i = 0; i < 1_000; i++) {
      const found = this.acks.find(predicate);
      if (found) return found;
      const before = this.acks.length;
      this.send(frame(bytes));
      await this.untilAcks(before + 1);
    }
    throw new Error('no ack met the condition');
  }

  close(): Promise<number> {
    this.ws.close();
    return this.closed;
  }

  private notify(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

export const frame = (size: number, fill = 0xab): Buffer => Buffer.alloc(size, fill);
