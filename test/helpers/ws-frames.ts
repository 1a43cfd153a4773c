import { createHash } from 'node:crypto';

/** Client-side WebSocket frames built by hand, for feeding the server bytes a library would never send. */
export interface RawFrameOptions {
  fin?: boolean;
  /** Set to send the frame unmasked, which a client must not do. */
  unmasked?: boolean;
  /** RSV1–3 bits, 0–7. */
  rsv?: number;
  key?: readonly [number, number, number, number];
  /** Announce this payload length instead of the real one. */
  announcedLength?: number;
}

export const Op = { continuation: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

export function rawFrame(opcode: number, payload: Uint8Array | string, options: RawFrameOptions = {}): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : Buffer.from(payload);
  const length = options.announcedLength ?? body.length;
  const key = options.key ?? [0x37, 0xfa, 0x21, 0x3d];
  const masked = !options.unmasked;
  const lengthBytes = length < 126 ? 0 : length < 65536 ? 2 : 8;
  const header = Buffer.alloc(2 + lengthBytes + (masked ? 4 : 0));
  header[0] = ((options.fin ?? true) ? 0x80 : 0) | ((options.rsv ?? 0) << 4) | opcode;
  header[1] = (masked ? 0x80 : 0) | (length < 126 ? length : length < 65536 ? 126 : 127);
  if (lengthBytes === 2) header.writeUInt16BE(length, 2);
  if (lengthBytes === 8) header.writeBigUInt64BE(BigInt(length), 2);
  if (masked) {
    header.set(key, 2 + lengthBytes);
    for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (key[i & 3] as number);
  }
  return Buffer.concat([header, body]);
}

export function closePayload(code: number, reason = ''): Buffer {
  const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
  payload.writeUInt16BE(code, 0);
  payload.write(reason, 2);
  return payload;
}

/** Deterministic, varied bytes: frames that differ at every offset, so a mis-unmasked byte shows. */
export function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

/** Splits unmasked server frames; a trailing partial frame is left out. */
export function serverFrames(data: Buffer): { opcode: number; payload: Buffer }[] {
  const frames: { opcode: number; payload: Buffer }[] = [];
  let at = 0;
  while (at + 2 <= data.length) {
    const short = (data[at + 1] as number) & 0x7f;
    const headerLength = short === 126 ? 4 : short === 127 ? 10 : 2;
    if (at + headerLength > data.length) break;
    const length = short === 126 ? data.readUInt16BE(at + 2) : short === 127 ? Number(data.readBigUInt64BE(at + 2)) : short;
    if (at + headerLength + length > data.length) break;
    frames.push({ opcode: (data[at] as number) & 0x0f, payload: data.subarray(at + headerLength, at + headerLength + length) });
    at += headerLength + length;
  }
  return frames;
}

/** A message's length and digest: short to compare, and any wrong byte changes it. */
export const digest = (bytes: Uint8Array): string => `${bytes.length} bytes, sha1 ${createHash('sha1').update(bytes).digest('hex')}`;
