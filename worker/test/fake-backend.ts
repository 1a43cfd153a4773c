import { DurableObject } from 'cloudflare:workers';

/**
 * Stands in for the container (the Node server) behind the BACKEND binding.
 * HTTP: answers with what it received (instance name, method, path, headers, body).
 * WebSocket `/vision/stream?session=S`: acks each binary frame like the server
 * (`{"frame":N,"bytes":LEN}`), and every second ack carries a caption for
 * window `S-<k>`. A text message `close:<code>` makes it close with that code;
 * the close codes it receives from the relay are kept for `closes()`.
 */
export class FakeBackend extends DurableObject {
  private readonly received: number[] = [];

  override async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const instance = this.ctx.id.name ?? this.ctx.id.toString();
    if (request.headers.get('upgrade')?.toLowerCase() !== 'websocket') {
      return Response.json({
        instance,
        method: request.method,
        path: url.pathname,
        headers: Object.fromEntries(request.headers),
        body: await request.text(),
      });
    }
    if (url.searchParams.get('refuse') === '1') return Response.json({ detail: 'shutting down' }, { status: 503 });
    const session = url.searchParams.get('session') ?? 'session';
    const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
    server.binaryType = 'arraybuffer';
    server.accept();
    // `?echo=1`: first say which headers the upgrade carried (to check what the relay adds).
    if (url.searchParams.get('echo') === '1') server.send(JSON.stringify({ headers: Object.fromEntries(request.headers) }));
    let frame = 0;
    server.addEventListener('message', (event) => {
      if (typeof event.data === 'string') {
        const code = /^close:(\d+)$/.exec(event.data)?.[1];
        if (code) server.close(Number(code), 'backend says bye');
        return;
      }
      frame += 1;
      const ack: Record<string, unknown> = { frame, bytes: (event.data as ArrayBuffer).byteLength };
      if (frame % 2 === 0) {
        const k = frame / 2 - 1;
        Object.assign(ack, {
          caption: `caption ${k}`,
          latency_ms: 41.5,
          chunk_start_s: k,
          chunk_end_s: k + 0.9,
          tokens_generated: 7,
          window_id: `${session}-${k}`,
        });
      }
      server.send(JSON.stringify(ack));
    });
    server.addEventListener('close', (event) => {
      this.received.push(event.code);
    });
    return new Response(null, { status: 101, webSocket: client, headers: { 'x-instance': instance } });
  }

  /** Close codes the relay delivered to this instance. */
  closes(): number[] {
    return [...this.received];
  }
}
