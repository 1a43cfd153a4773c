import { env, SELF } from 'cloudflare:test';
import type { TestEnv } from './test-env.ts';

/** The bindings of the test runtime (see vitest.config.ts). */
export const testEnv = env as unknown as TestEnv;

export const MAGIC = 'test-magic-word';
export const BASE = 'https://foresight.test';

/** A request to the Worker with the magic word in the header (or none with `magic: null`). */
export function call(path: string, init: RequestInit & { magic?: string | null } = {}): Promise<Response> {
  const { magic = MAGIC, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (magic !== null) headers.set('x-magic-word', magic);
  return SELF.fetch(`${BASE}${path}`, { ...rest, headers });
}

export const postJson = (path: string, body: unknown, init: RequestInit & { magic?: string | null } = {}) =>
  call(path, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body), ...init });

export async function rows<T = Record<string, unknown>>(sql: string, ...values: unknown[]): Promise<T[]> {
  return (await testEnv.DB.prepare(sql).bind(...values).all<T>()).results;
}

/** Messages a WebSocket receives, with a way to await a condition over them. */
export class Socket {
  readonly messages: string[] = [];
  closed: { code: number; reason: string } | undefined;
  private readonly waiters: Array<() => void> = [];
  readonly ws: WebSocket;

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.accept();
    ws.addEventListener('message', (event) => {
      this.messages.push(typeof event.data === 'string' ? event.data : '[binary]');
      this.notify();
    });
    ws.addEventListener('close', (event) => {
      this.closed = { code: event.code, reason: event.reason };
      this.notify();
    });
  }

  until(predicate: () => boolean, what = 'condition'): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate()) resolve();
        else if (this.closed) reject(new Error(`socket closed (${this.closed.code}) before ${what}`));
        else this.waiters.push(check);
      };
      check();
    });
  }

  untilClosed(): Promise<{ code: number; reason: string }> {
    return new Promise((resolve) => {
      const check = () => (this.closed ? resolve(this.closed) : this.waiters.push(check));
      check();
    });
  }

  private notify(): void {
    for (const waiter of this.waiters.splice(0)) waiter();
  }
}

export async function openStream(query = '', headers: Record<string, string> = { 'x-magic-word': MAGIC }): Promise<Socket> {
  const response = await SELF.fetch(`${BASE}/vision/stream${query}`, { headers: { upgrade: 'websocket', ...headers } });
  if (response.status !== 101 || !response.webSocket) throw new Error(`upgrade answered ${response.status}`);
  return new Socket(response.webSocket);
}
