import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createInspector, createWebSocketInspector, type StatelyInspectionEvent } from '@statelyai/inspect';
import { WebSocket, WebSocketServer } from 'ws';
import type { InspectionEvent, Observer } from 'xstate';
import { isAuthorized } from '../auth.ts';
import { answerAndClose } from '../transport/websocket.ts';

/** Keys whose values never leave the process. */
const SECRET_KEY = /(api[-_]?key|token[-_]?(id|secret)|secret|magic[-_]?word|authorization|password)$/i;
const MAX_DEPTH = 6;

/**
 * What the inspector may see of a value: frame bytes become `{bytes: N}`,
 * secrets `[redacted]`, functions, streams and handles a short tag.
 */
export function redact(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') {
    return typeof value === 'function' ? '[function]' : value;
  }
  if (ArrayBuffer.isView(value)) return { bytes: value.byteLength };
  if (value instanceof ArrayBuffer) return { bytes: value.byteLength };
  if (depth >= MAX_DEPTH) return '[…]';
  if (Array.isArray(value)) return value.map((item) => redact(item, depth + 1));
  const proto = Object.getPrototypeOf(value) as object | null;
  if (proto !== Object.prototype && proto !== null) {
    // Class instances (observables, actor refs, SDK clients, errors) are not data.
    if (value instanceof Error) return { error: value.message };
    return `[${(proto.constructor as { name?: string } | undefined)?.name ?? 'object'}]`;
  }
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    out[key] = SECRET_KEY.test(key) ? '[redacted]' : redact(inner, depth + 1);
  }
  return out;
}

export interface Inspection {
  /** Pass to `createActor(..., { inspect })` of the root actor. */
  inspect: Observer<InspectionEvent>;
  /** Where a person opens the inspector, when this process runs the relay (the magic word left out). */
  url: string | undefined;
  stop(): void;
}

/** Limits of the relay; every one is a bound on what a viewer can make this process hold or do. */
export const INSPECTOR_LIMITS = {
  /** Events kept for a viewer that connects later. */
  replayEvents: 200,
  /** Viewers at once; more are refused with 503. */
  viewers: 8,
  /** A viewer sends nothing but pongs: a bigger message closes it with 1009. */
  viewerMessageBytes: 4 * 1024,
  /** A viewer this far behind is closed with 1008 instead of being queued for without end. */
  viewerBufferedBytes: 4 * 1024 * 1024,
  /** An event larger than this (once redacted) is summarised instead of sent. */
  eventBytes: 256 * 1024,
} as const;

export interface InspectionOptions {
  port: number;
  /** Where the relay listens; loopback unless the operator says otherwise (INSPECT_HOST). */
  host: string;
  /** When set, the page and the viewers' WebSocket need it (`?magic_word=`), as every route does. */
  magicWord?: string | undefined;
  /** Reports to an existing relay (`ws://…`) instead of starting one. */
  relayUrl?: string;
  /**
   * Viewers are pinged this often (ms); one silent since `peerTimeoutMs` (no pong, no
   * message) is terminated, so a vanished viewer frees its slot. Defaults: 15 s and 45 s.
   */
  pingIntervalMs?: number;
  peerTimeoutMs?: number;
}

/**
 * Streams every actor's events and snapshots to the Stately inspector (SPEC
 * §11), redacted first, through a relay this process serves: an HTTP page that
 * embeds the Stately inspector and a WebSocket the page reads events from.
 * The relay only sends: what viewers send is never relayed, so nobody can
 * inject events. It listens on loopback by default, wants the magic word when
 * one is set, bounds every message and queue (`INSPECTOR_LIMITS`), and no
 * input a viewer or a stranger sends can end the process.
 */
export async function startInspection(options: InspectionOptions): Promise<Inspection> {
  const sanitize = {
    // Events are redacted before they reach the inspector (below), contexts here.
    sanitizeContext: (context: unknown) => redact(context) as never,
    // A last pass over the whole event: actor inputs and outputs are not covered by the two.
    serialize: (event: StatelyInspectionEvent) => redact(event) as StatelyInspectionEvent,
  };
  let relay: Relay | undefined;
  let inspector;
  if (options.relayUrl) {
    inspector = createWebSocketInspector({ url: options.relayUrl, ...sanitize });
  } else {
    relay = await Relay.start(options);
    inspector = createInspector(relay.adapter, sanitize);
    inspector.start();
  }
  const report = inspector.inspect as Observer<InspectionEvent>;
  return {
    // The inspector reports on a later tick, by which time a chunk's frames may have been freed
    // (src/streams/frame-copies.ts): the event is summarised now, as it was when it happened.
    inspect: {
      next: (event) => report.next?.('event' in event ? { ...event, event: redact(event.event) as typeof event.event } : event),
    },
    url: relay?.url,
    stop() {
      inspector.stop();
      relay?.stop();
    },
  };
}

/** What `createInspector` reports to (the package does not export its own name for it). */
type Adapter = Parameters<typeof createInspector>[0];

class Relay {
  readonly adapter: Adapter;
  private readonly replay: string[] = [];
  private readonly viewers = new Set<WebSocket>();
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly magicWord: string | undefined;
  /** When each viewer was last heard from (pong or message), in ms of `performance.now()`. */
  private readonly heard = new Map<WebSocket, number>();
  private readonly heartbeat: NodeJS.Timeout;

  private constructor(http: Server, wss: WebSocketServer, options: InspectionOptions) {
    this.http = http;
    this.wss = wss;
    this.magicWord = options.magicWord;
    this.adapter = { send: (event: StatelyInspectionEvent) => this.broadcast(event) };
    const peerTimeoutMs = options.peerTimeoutMs ?? 45_000;
    this.heartbeat = setInterval(() => {
      const now = performance.now();
      for (const ws of this.viewers) {
        if (now - (this.heard.get(ws) ?? now) >= peerTimeoutMs) ws.terminate();
        else ws.ping();
      }
    }, options.pingIntervalMs ?? 15_000);
    this.heartbeat.unref();
  }

  static async start(options: InspectionOptions): Promise<Relay> {
    const http = createServer();
    // No viewer sends more than a pong; `ws` closes bigger messages with 1009 and bad frames with 1002.
    const wss = new WebSocketServer({ noServer: true, maxPayload: INSPECTOR_LIMITS.viewerMessageBytes, perMessageDeflate: false });
    const relay = new Relay(http, wss, options);
    http.on('request', (req, res) => {
      const url = URL.parse(req.url ?? '/', 'http://localhost');
      if (!url || url.pathname !== '/') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"detail":"not found"}');
      } else if (!isAuthorized(relay.magicWord, req.headers, url)) {
        res.writeHead(403, { 'content-type': 'application/json' }).end('{"detail":"forbidden"}');
      } else {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(BRIDGE_PAGE);
      }
    });
    http.on('upgrade', (req, socket, head) => relay.upgrade(req, socket, head));
    wss.on('error', () => undefined);
    wss.on('wsClientError', (_error, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(options.port, options.host, () => {
        http.off('error', reject);
        resolve();
      });
    });
    http.on('error', () => undefined);
    return relay;
  }

  /** The page's address, once listening. */
  get url(): string {
    const { address, port } = this.http.address() as AddressInfo;
    const host = address.includes(':') ? `[${address}]` : address;
    return `http://${address === '0.0.0.0' || address === '::' ? 'localhost' : host}:${port}`;
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const url = URL.parse(req.url ?? '/', 'http://localhost');
    const refuse = (status: number, text: string) =>
      answerAndClose(socket, `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    if (!url) return refuse(400, 'Bad Request');
    if (!isAuthorized(this.magicWord, req.headers, url)) return refuse(403, 'Forbidden');
    if (this.viewers.size >= INSPECTOR_LIMITS.viewers) return refuse(503, 'Service Unavailable');
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      this.viewers.add(ws);
      const heard = () => this.heard.set(ws, performance.now());
      heard();
      ws.on('error', () => ws.terminate());
      ws.on('close', () => {
        this.viewers.delete(ws);
        this.heard.delete(ws);
      });
      ws.on('pong', heard);
      // Viewers only read; whatever they send is dropped, never relayed.
      ws.on('message', heard);
      for (const message of this.replay) this.sendTo(ws, message);
    });
  }

  private broadcast(event: StatelyInspectionEvent): void {
    let message: string;
    try {
      message = JSON.stringify(event);
    } catch {
      return;
    }
    if (message.length > INSPECTOR_LIMITS.eventBytes) {
      message = JSON.stringify({ ...event, snapshot: undefined, event: { type: (event as { event?: { type?: string } }).event?.type ?? 'event', truncated: true } });
    }
    this.replay.push(message);
    if (this.replay.length > INSPECTOR_LIMITS.replayEvents) this.replay.shift();
    for (const ws of this.viewers) this.sendTo(ws, message);
  }

  private sendTo(ws: WebSocket, message: string): void {
    if (ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > INSPECTOR_LIMITS.viewerBufferedBytes) {
      ws.close(1008, 'too far behind');
      ws.terminate();
      return;
    }
    ws.send(message);
  }

  stop(): void {
    clearInterval(this.heartbeat);
    for (const ws of this.viewers) ws.terminate();
    this.wss.close();
    this.http.close();
    this.http.closeAllConnections();
  }
}

/**
 * The page a person opens: the Stately inspector in a frame, fed the events
 * this relay sends (its own query string, magic word included, goes to the
 * WebSocket). The same bridge as @statelyai/inspect's server.
 */
const BRIDGE_PAGE = `<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>Foresight actors: Stately inspector</title>
  <style>* { margin: 0; padding: 0; } html, body { height: 100%; } iframe { width: 100%; height: 100%; border: none; }</style>
</head>
<body>
  <iframe id="inspector" src="https://stately.ai/inspect"></iframe>
  <script>
    const iframe = document.getElementById('inspector');
    const buffer = [];
    let connected = false;
    window.addEventListener('message', (e) => {
      if (e.data && e.data.type === '@statelyai.connected') {
        connected = true;
        for (const event of buffer.splice(0)) iframe.contentWindow.postMessage(event, '*');
      }
    });
    const ws = new WebSocket(location.origin.replace(/^http/, 'ws') + '/' + location.search);
    ws.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (connected) iframe.contentWindow.postMessage(event, '*');
      else buffer.push(event);
    };
  </script>
</body>
</html>`;
