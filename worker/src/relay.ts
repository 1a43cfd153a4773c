import { captionAckSchema, captionUploadFromAck, captionUploadSchema, type CaptionUpload } from '../../src/schemas/uploads.ts';

/** Close codes a peer may not send itself (RFC 6455 §7.4.1): they describe what happened, not what to say. */
const RESERVED = new Set([1005, 1006, 1015]);

function closeWith(socket: WebSocket, code: number, reason: string): void {
  try {
    if (code === 1006 || code === 1015) socket.close(1011, 'peer connection lost');
    else if (RESERVED.has(code)) socket.close(1000, reason);
    else socket.close(code, reason);
  } catch {
    // Already closing or closed.
  }
}

/** With `binaryType = 'arraybuffer'` a message is text or an ArrayBuffer. */
type Message = string | ArrayBuffer;

function forward(to: WebSocket, data: Message): void {
  try {
    to.send(data);
  } catch {
    // The other side is gone; its close event ends the relay.
  }
}

/**
 * A caption ack as the stored row, or undefined for any other message. Cheap
 * for the common case: an ack without `"caption"` is never parsed.
 */
export function captionOf(message: Message, openedAt: number): CaptionUpload | undefined {
  if (typeof message !== 'string' || !message.includes('"caption"')) return undefined;
  let body: unknown;
  try {
    body = JSON.parse(message);
  } catch {
    return undefined;
  }
  const ack = captionAckSchema.safeParse(body);
  if (!ack.success) return undefined;
  const upload = captionUploadSchema.safeParse(captionUploadFromAck(ack.data, openedAt));
  return upload.success ? upload.data : undefined;
}

/**
 * Relays a glasses WebSocket to a container (SPEC §8): frames client → container,
 * acks container → client, close codes both ways. Every ack that carries a
 * caption is handed to `onCaption` (stored by window id, so the container's own
 * upload of the same caption never makes a second row).
 */
export async function relayWebSocket(
  request: Request,
  backend: { fetch(request: Request): Promise<Response> },
  onCaption: (caption: CaptionUpload) => void,
): Promise<Response> {
  const answer = await backend.fetch(request);
  const upstream = answer.webSocket;
  // The container refused (auth, shutting down): its answer goes back as it is.
  if (!upstream) return answer;
  const openedAt = Date.now();
  const [client, server] = Object.values(new WebSocketPair()) as [WebSocket, WebSocket];
  // Frames stay ArrayBuffers end to end: a Blob would need an await and could reorder them.
  upstream.binaryType = 'arraybuffer';
  server.binaryType = 'arraybuffer';
  upstream.accept();
  server.accept();
  server.addEventListener('message', (event) => forward(upstream, event.data as Message));
  upstream.addEventListener('message', (event) => {
    forward(server, event.data as Message);
    const caption = captionOf(event.data as Message, openedAt);
    if (caption) onCaption(caption);
  });
  server.addEventListener('close', (event) => closeWith(upstream, event.code, event.reason));
  upstream.addEventListener('close', (event) => closeWith(server, event.code, event.reason));
  server.addEventListener('error', () => closeWith(upstream, 1011, 'client connection failed'));
  upstream.addEventListener('error', () => closeWith(server, 1011, 'backend connection failed'));
  return new Response(null, { status: 101, webSocket: client });
}
