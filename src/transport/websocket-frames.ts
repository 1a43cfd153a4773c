import { isUtf8 } from 'node:buffer';
import bufferUtil from 'bufferutil';
import { framePool } from '../streams/frame-copies.ts';

/**
 * The server side of RFC 6455 framing, for a socket read into one shared
 * buffer (`websocket.ts`): the reader is fed each read as it lands and copies
 * out only what outlives the read. A binary message is unmasked straight into
 * one of two buffers the reader reuses, so receiving a frame allocates no
 * buffer of its own.
 */

/** The close codes this end reports or sends on its own. */
export const CloseCode = {
  protocolError: 1002,
  noStatus: 1005,
  abnormal: 1006,
  invalidPayload: 1007,
  policyViolation: 1008,
  tooBig: 1009,
  internalError: 1011,
} as const;

export interface FrameEvents {
  /**
   * A whole binary message, unmasked. The bytes are lent: they stay valid until
   * another non-empty binary message has been delivered, and may be overwritten
   * after that. (Two buffers take turns; an empty or small message takes no turn.)
   */
  binary(bytes: Uint8Array): void;
  /** A whole text message, valid UTF-8; lent for the call only. */
  text(bytes: Uint8Array): void;
  ping(payload: Uint8Array): void;
  /** The peer's close frame: its code (1005 when it gave none) and reason. */
  close(code: number, reason: string): void;
  /** The peer broke the protocol; the reader ignores everything after this. */
  fail(code: number, reason: string): void;
}

const EMPTY = new Uint8Array(0);

const Opcode = { continuation: 0x0, text: 0x1, binary: 0x2, close: 0x8, ping: 0x9, pong: 0xa } as const;

const Phase = { header: 0, payload: 1, failed: 2 } as const;
type Phase = (typeof Phase)[keyof typeof Phase];

/**
 * A text message is never a frame (the server only answers it), so it may be
 * this long at most; a longer one closes the connection with 1009. Its bytes
 * go into one buffer per message, not one per fragment: 1-byte fragments cost
 * their bytes, not an object each.
 */
export const MAX_TEXT_BYTES = 4 * 1024;

/** Below this a JavaScript loop unmasks, as `ws` does: the call into the native helper costs more. */
const NATIVE_MASK_MIN = 48;
/** A reused message buffer this much larger than the message it would hold is replaced by a smaller one. */
const SHRINK_FACTOR = 4;
const SHRINK_MIN_BYTES = 64 * 1024;
/**
 * A message in one frame below this size gets a slice of Node's shared buffer
 * pool instead of a turn in the reused buffers, which an idle connection would
 * otherwise hold twice over.
 */
const POOLED_BELOW = Buffer.poolSize >>> 1;
/**
 * Room taken for a binary frame before its bytes arrive: a frame that announces
 * more gets this much, and more as its bytes come (doubling, up to the frame).
 * So a header that announces 4 MiB and sends nothing holds 64 KiB, not 4 MiB.
 */
export const EAGER_PAYLOAD_BYTES = 64 * 1024;

const maskKey = new Uint8Array(4);

/**
 * Copies `length` masked bytes of `source` from `start` into `target` at
 * `offset`, unmasking them. The key is the four bytes of `header` from
 * `keyAt`; `phase` is how many payload bytes of the frame came before.
 */
function unmaskInto(
  source: Uint8Array,
  start: number,
  length: number,
  header: Uint8Array,
  keyAt: number,
  phase: number,
  target: Uint8Array,
  offset: number,
): void {
  for (let i = 0; i < 4; i++) maskKey[i] = header[keyAt + ((phase + i) & 3)] as number;
  if (length < NATIVE_MASK_MIN) {
    for (let i = 0; i < length; i++) target[offset + i] = (source[start + i] as number) ^ (maskKey[i & 3] as number);
    return;
  }
  bufferUtil.mask(source.subarray(start, start + length), maskKey, target, offset, length);
}

function isValidCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}

/**
 * Parses client frames (masked, no extensions) into messages. Feed it every
 * read in order; it keeps a partial header across reads, copies payloads out
 * as they arrive and never holds on to the buffer it was fed.
 */
export class FrameReader {
  private phase: Phase = Phase.header;
  private readonly header = new Uint8Array(14);
  private headerLength = 0;
  private headerNeed = 2;

  // The frame being read.
  private fin = false;
  private opcode = 0;
  /** Where the frame's masking key starts in `header`. */
  private keyAt = 2;
  private payloadLength = 0;
  private payloadRead = 0;

  // The message being assembled: 0 when none, else text or binary.
  private messageOpcode = 0;
  private messageLength = 0;
  private readonly slots: [Uint8Array | null, Uint8Array | null] = [null, null];
  private slot = 0;
  private target: Uint8Array | null = null;
  private targetIsSlot = false;
  /** The text message being assembled (at most MAX_TEXT_BYTES). */
  private text: Uint8Array | null = null;
  private control: Uint8Array | null = null;

  private readonly maxMessageBytes: number;
  private readonly events: FrameEvents;
  /** Frames read so far, control frames included: what a rate limit counts. */
  framesRead = 0;
  /** Data messages begun so far (a heartbeat tells a stalled message from a new one by it). */
  messagesStarted = 0;

  constructor(maxMessageBytes: number, events: FrameEvents) {
    this.maxMessageBytes = maxMessageBytes;
    this.events = events;
  }

  /**
   * Reads `data` from `start` to `end`, or up to the end of the `maxFrames`th
   * frame completed in this call; returns where it stopped (`end` when it read all).
   */
  feed(data: Uint8Array, start: number, end: number, maxFrames = Infinity): number {
    let at = start;
    const stopAt = this.framesRead + maxFrames;
    while (at < end && this.phase !== Phase.failed) {
      if (this.framesRead >= stopAt) return at;
      if (this.phase === Phase.header) {
        at = this.readHeader(data, at, end);
      } else {
        const length = Math.min(this.payloadLength - this.payloadRead, end - at);
        this.readPayload(data, at, length);
        at += length;
      }
      if (this.phase === Phase.payload && this.payloadRead === this.payloadLength) this.endFrame();
    }
    return end;
  }

  private readHeader(data: Uint8Array, start: number, end: number): number {
    let at = start;
    const { header } = this;
    while (this.headerLength < 2 && at < end) header[this.headerLength++] = data[at++] as number;
    if (this.headerLength < 2) return at;
    if (this.headerNeed === 2) {
      const error = this.checkFirstBytes();
      if (error) {
        this.failWith(error[0], error[1]);
        return end;
      }
      const short = (header[1] as number) & 0x7f;
      this.headerNeed = 2 + (short === 126 ? 2 : short === 127 ? 8 : 0) + 4;
    }
    while (this.headerLength < this.headerNeed && at < end) header[this.headerLength++] = data[at++] as number;
    if (this.headerLength < this.headerNeed) return at;
    const short = (header[1] as number) & 0x7f;
    let length = short;
    if (short === 126) {
      length = ((header[2] as number) << 8) | (header[3] as number);
    } else if (short === 127) {
      const high = ((header[2] as number) << 24) | ((header[3] as number) << 16) | ((header[4] as number) << 8) | (header[5] as number);
      const low = (((header[6] as number) << 24) | ((header[7] as number) << 16) | ((header[8] as number) << 8) | (header[9] as number)) >>> 0;
      // Beyond 2^53 - 1 a length is no longer exact; any such message is over the limit anyway.
      if (high >>> 21 !== 0) {
        this.failWith(CloseCode.tooBig, 'Unsupported WebSocket frame: payload length > 2^53 - 1');
        return end;
      }
      length = (high >>> 0) * 2 ** 32 + low;
    }
    this.keyAt = this.headerNeed - 4;
    this.headerLength = 0;
    this.headerNeed = 2;
    this.payloadLength = length;
    this.payloadRead = 0;
    this.phase = Phase.payload;
    if (!this.startPayload()) return end;
    return at;
  }

  /** Validates the first two header bytes and records the frame's kind. */
  private checkFirstBytes(): [number, string] | undefined {
    const first = this.header[0] as number;
    const second = this.header[1] as number;
    if ((first & 0x70) !== 0) return [CloseCode.protocolError, 'Invalid WebSocket frame: RSV1, RSV2 and RSV3 must be clear'];
    if ((second & 0x80) === 0) return [CloseCode.protocolError, 'Invalid WebSocket frame: MASK must be set'];
    this.fin = (first & 0x80) !== 0;
    this.opcode = first & 0x0f;
    const short = second & 0x7f;
    switch (this.opcode) {
      case Opcode.continuation:
        if (this.messageOpcode === 0) return [CloseCode.protocolError, 'Invalid WebSocket frame: invalid opcode 0'];
        return undefined;
      case Opcode.text:
      case Opcode.binary:
        if (this.messageOpcode !== 0) return [CloseCode.protocolError, `Invalid WebSocket frame: invalid opcode ${this.opcode}`];
        return undefined;
      case Opcode.close:
      case Opcode.ping:
      case Opcode.pong:
        if (!this.fin) return [CloseCode.protocolError, 'Invalid WebSocket frame: FIN must be set'];
        if (short > 125) return [CloseCode.protocolError, `Invalid WebSocket frame: invalid payload length ${short}`];
        return undefined;
      default:
        return [CloseCode.protocolError, `Invalid WebSocket frame: invalid opcode ${this.opcode}`];
    }
  }

  /** Readies the target of a data frame's payload; false when the message would be over the limit. */
  private startPayload(): boolean {
    if (this.opcode >= Opcode.close) return true;
    const total = this.messageLength + this.payloadLength;
    if (total > this.maxMessageBytes) {
      this.failWith(CloseCode.tooBig, 'Max payload size exceeded');
      return false;
    }
    if (this.opcode !== Opcode.continuation) {
      this.messageOpcode = this.opcode;
      this.messagesStarted += 1;
    }
    if (this.messageOpcode === Opcode.binary) {
      this.target = this.binaryTarget(total);
    } else {
      if (total > MAX_TEXT_BYTES) {
        this.failWith(CloseCode.tooBig, 'Text message too big: this server reads binary frames');
        return false;
      }
      if (!this.text || this.text.byteLength < total) {
        const grown = new Uint8Array(Math.min(MAX_TEXT_BYTES, Math.max(total, 2 * (this.text?.byteLength ?? 0))));
        if (this.text && this.messageLength > 0) grown.set(this.text.subarray(0, this.messageLength));
        this.text = grown;
      }
    }
    return true;
  }

  /** The buffer the binary message goes into, with room for `total` bytes and what is already there. */
  private binaryTarget(total: number): Uint8Array {
    if (this.messageLength === 0 && this.fin && total < POOLED_BELOW) {
      this.targetIsSlot = false;
      return Buffer.allocUnsafe(total);
    }
    // A fragmented message always goes into a reused buffer: only a single frame takes a pool slice.
    return this.slotFor(Math.min(total, this.messageLength + EAGER_PAYLOAD_BYTES));
  }

  /** Whether a data message has begun and not ended (its buffer is held meanwhile). */
  get midMessage(): boolean {
    return this.messageOpcode !== 0;
  }

  /**
   * The binary target, grown to hold `need` bytes as the frame's bytes arrive
   * (doubling, at most the frame's end), keeping what is already in it.
   */
  private growTarget(need: number): Uint8Array {
    const current = this.target as Uint8Array;
    const size = Math.min(this.messageLength + this.payloadLength, Math.max(need, 2 * current.byteLength));
    const next = framePool.take(size);
    next.set(current.subarray(0, this.messageLength + this.payloadRead));
    if (this.targetIsSlot && framePool.isLent(current)) framePool.giveBack(current);
    this.targetIsSlot = true;
    this.slots[this.slot] = next;
    this.target = next;
    return next;
  }

  /**
   * The reused buffer whose turn it is, with room for `total` bytes and what
   * is already in it. Buffers come from the frame pool: one whose message the
   * consumer kept (`FramePool.keep`) is the consumer's now, and is replaced.
   */
  private slotFor(total: number): Uint8Array {
    this.targetIsSlot = true;
    const current = this.slots[this.slot] ?? null;
    const ours = current !== null && framePool.isLent(current);
    if (ours && current.byteLength >= total && (current.byteLength <= SHRINK_MIN_BYTES || current.byteLength < total * SHRINK_FACTOR)) {
      return current;
    }
    // A fragmented message may outgrow its buffer; grow it geometrically, keeping what has arrived.
    const size = this.messageLength > 0 ? Math.min(this.maxMessageBytes, Math.max(total, 2 * this.messageLength)) : total;
    const next = framePool.take(size);
    if (current && this.messageLength > 0) next.set(current.subarray(0, this.messageLength));
    if (ours) framePool.giveBack(current);
    this.slots[this.slot] = next;
    return next;
  }

  /**
   * Hands the reused message buffers back to the frame pool between messages
   * (an idle connection need not hold two buffers as large as its largest
   * message); it takes new ones when the next large message comes.
   */
  releaseBuffers(): void {
    if (this.phase !== Phase.header || this.headerLength > 0 || this.messageOpcode !== 0) return;
    for (const buffer of this.slots) if (buffer && framePool.isLent(buffer)) framePool.giveBack(buffer);
    this.slots[0] = null;
    this.slots[1] = null;
  }

  /** Hands the reader's buffers back to the frame pool; it reads nothing after this. */
  dispose(): void {
    for (const buffer of this.slots) if (buffer) framePool.giveBack(buffer);
    this.slots[0] = null;
    this.slots[1] = null;
    this.phase = Phase.failed;
  }

  private readPayload(data: Uint8Array, at: number, length: number): void {
    const { header, keyAt, payloadRead: phase } = this;
    if (this.opcode >= Opcode.close) {
      this.control ??= new Uint8Array(125);
      unmaskInto(data, at, length, header, keyAt, phase, this.control, this.payloadRead);
    } else if (this.messageOpcode === Opcode.binary) {
      const offset = this.messageLength + this.payloadRead;
      const target = this.target as Uint8Array;
      unmaskInto(data, at, length, header, keyAt, phase, offset + length > target.byteLength ? this.growTarget(offset + length) : target, offset);
    } else {
      unmaskInto(data, at, length, header, keyAt, phase, this.text as Uint8Array, this.messageLength + this.payloadRead);
    }
    this.payloadRead += length;
  }

  private endFrame(): void {
    this.phase = Phase.header;
    this.framesRead += 1;
    if (this.opcode >= Opcode.close) {
      this.endControl((this.control ?? EMPTY).subarray(0, this.payloadLength));
      return;
    }
    this.messageLength += this.payloadLength;
    if (!this.fin) return;
    const length = this.messageLength;
    const opcode = this.messageOpcode;
    this.messageOpcode = 0;
    this.messageLength = 0;
    if (opcode === Opcode.binary) {
      const buffer = this.target as Uint8Array;
      this.target = null;
      if (length === 0) {
        this.events.binary(EMPTY);
        return;
      }
      if (this.targetIsSlot) this.slot ^= 1;
      this.events.binary(buffer.byteLength === length ? buffer : buffer.subarray(0, length));
      return;
    }
    const text = (this.text ?? EMPTY).subarray(0, length);
    this.text = null;
    if (!isUtf8(text)) {
      this.failWith(CloseCode.invalidPayload, 'Invalid WebSocket frame: invalid UTF-8 sequence');
      return;
    }
    this.events.text(text);
  }

  private endControl(payload: Uint8Array): void {
    if (this.opcode === Opcode.ping) {
      this.events.ping(payload);
    } else if (this.opcode === Opcode.close) {
      if (payload.length === 0) {
        this.phase = Phase.failed;
        this.events.close(CloseCode.noStatus, '');
        return;
      }
      if (payload.length === 1) return this.failWith(CloseCode.protocolError, 'Invalid WebSocket frame: invalid payload length 1');
      const code = ((payload[0] as number) << 8) | (payload[1] as number);
      if (!isValidCloseCode(code)) return this.failWith(CloseCode.protocolError, `Invalid WebSocket frame: invalid status code ${code}`);
      const reason = payload.subarray(2);
      if (!isUtf8(reason)) return this.failWith(CloseCode.invalidPayload, 'Invalid WebSocket frame: invalid UTF-8 sequence');
      // Nothing after a close frame is read.
      this.phase = Phase.failed;
      this.events.close(code, Buffer.from(reason).toString('utf8'));
    }
  }

  private failWith(code: number, reason: string): void {
    this.phase = Phase.failed;
    this.text = null;
    this.target = null;
    this.events.fail(code, reason);
  }
}

/** A server frame header (unmasked, FIN set) for a payload of `length` bytes. */
function frameHeader(opcode: number, length: number): Buffer {
  if (length < 126) return Buffer.from([0x80 | opcode, length]);
  if (length < 65536) return Buffer.from([0x80 | opcode, 126, length >>> 8, length & 0xff]);
  const header = Buffer.alloc(10);
  header[0] = 0x80 | opcode;
  header[1] = 127;
  header.writeUIntBE(length, 4, 6);
  return header;
}

/**
 * A text frame whose payload is ASCII, as a latin1 string: header and payload
 * written in one go, with no buffer allocated for it.
 */
export function asciiTextFrame(text: string): string {
  const length = text.length;
  if (length < 126) return String.fromCharCode(0x81, length) + text;
  if (length < 65536) return String.fromCharCode(0x81, 126, length >>> 8, length & 0xff) + text;
  return frameHeader(Opcode.text, length).toString('latin1') + text;
}

export function textFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  return Buffer.concat([frameHeader(Opcode.text, payload.length), payload]);
}

/** A close frame; without a code its payload is empty (the peer sees 1005). */
export function closeFrame(code?: number, reason = ''): Buffer {
  if (code === undefined) return frameHeader(Opcode.close, 0);
  const reasonBytes = Buffer.from(reason, 'utf8').subarray(0, 123);
  const payload = Buffer.alloc(2 + reasonBytes.length);
  payload.writeUInt16BE(code, 0);
  reasonBytes.copy(payload, 2);
  return Buffer.concat([frameHeader(Opcode.close, payload.length), payload]);
}

export function pongFrame(payload: Uint8Array): Buffer {
  return Buffer.concat([frameHeader(Opcode.pong, payload.length), payload]);
}
