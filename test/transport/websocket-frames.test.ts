import { describe, expect, it } from 'vitest';
import { FrameReader, type FrameEvents } from '../../src/transport/websocket-frames.ts';
import { framePool } from '../../src/streams/frame-copies.ts';
import { closePayload, digest, Op, pattern, rawFrame } from '../helpers/ws-frames.ts';

type Event =
  | { binary: string }
  | { text: string }
  | { ping: number[] }
  | { close: [number, string] }
  | { fail: [number, string] };

/** A reader that records what it delivers when it delivers it (the bytes are only lent). */
function recorder(maxMessageBytes = 1 << 20) {
  const events: Event[] = [];
  const handlers: FrameEvents = {
    binary: (bytes) => events.push({ binary: digest(bytes) }),
    text: (bytes) => events.push({ text: Buffer.from(bytes).toString('utf8') }),
    ping: (payload) => events.push({ ping: [...payload] }),
    close: (code, reason) => events.push({ close: [code, reason] }),
    fail: (code, reason) => events.push({ fail: [code, reason] }),
  };
  const reader = new FrameReader(maxMessageBytes, handlers);
  return { reader, events, feed: (data: Uint8Array) => reader.feed(data, 0, data.length) };
}

/** Feeds `data` in pieces cut at the given offsets, each through its own reused buffer like a socket read. */
function feedInPieces(reader: FrameReader, data: Uint8Array, cuts: number[]): void {
  const scratch = new Uint8Array(data.length + 16);
  let from = 0;
  for (const to of [...cuts, data.length]) {
    scratch.fill(0xee);
    scratch.set(data.subarray(from, to), 3);
    reader.feed(scratch, 3, 3 + (to - from));
    from = to;
  }
}

describe('FrameReader', () => {
  it('gives its reused message buffers back to the pool between messages, and takes new ones after', () => {
    const { reader, events, feed } = recorder(8 << 20);
    const big = pattern(1 << 20, 7);
    feed(rawFrame(Op.binary, big));
    feed(rawFrame(Op.binary, big));
    const held = (reader as unknown as { slots: Array<Uint8Array | null> }).slots.filter((b) => b !== null);
    expect(held).toHaveLength(2);
    expect(held.every((b) => framePool.isLent(b!))).toBe(true);
    reader.releaseBuffers();
    expect(held.every((b) => !framePool.isLent(b!))).toBe(true);
    expect((reader as unknown as { slots: Array<Uint8Array | null> }).slots).toEqual([null, null]);
    // Not in the middle of a message: a frame cut after its header keeps its buffer.
    const frame = rawFrame(Op.binary, big);
    feed(frame.subarray(0, 100));
    reader.releaseBuffers();
    feed(frame.subarray(100));
    expect(events.at(-1)).toEqual({ binary: digest(big) });
  });


  it('assembles a text message of a thousand 1-byte fragments into one, and refuses text over 4 KiB with 1009', () => {
    const { events, feed } = recorder();
    const fragments = [rawFrame(Op.text, 'h', { fin: false })];
    for (let i = 0; i < 998; i++) fragments.push(rawFrame(Op.continuation, 'a', { fin: false }));
    fragments.push(rawFrame(Op.continuation, '!'));
    feed(Buffer.concat(fragments));
    expect(events).toEqual([{ text: `h${'a'.repeat(998)}!` }]);

    const big = recorder();
    big.feed(Buffer.concat([rawFrame(Op.text, 'x'.repeat(4000), { fin: false }), rawFrame(Op.continuation, 'y'.repeat(200))]));
    expect(big.events).toEqual([{ fail: [1009, 'Text message too big: this server reads binary frames'] }]);
  });


  it('unmasks binary messages of every length encoding, whole or cut at any point', () => {
    const sizes = [0, 1, 3, 47, 48, 125, 126, 4095, 4096, 65535, 65536, 70001];
    const payloads = sizes.map((size, i) => pattern(size, i + 1));
    const stream = Buffer.concat(payloads.map((p, i) => rawFrame(Op.binary, p, { key: [i, 0x5a, 0xa5, 0xff - i] })));
    const expected = payloads.map((p) => ({ binary: digest(p) }));

    const whole = recorder();
    whole.feed(stream);
    expect(whole.events).toEqual(expected);

    // Byte by byte through the headers, odd cuts through the payloads.
    const cuts: number[] = [];
    for (let at = 1; at < stream.length; at += at < 200 ? 1 : 997) cuts.push(at);
    const pieces = recorder();
    feedInPieces(pieces.reader, stream, cuts);
    expect(pieces.events).toEqual(expected);
  });

  it('lends a message until another non-empty binary message has been delivered', () => {
    const delivered: Uint8Array[] = [];
    const reader = new FrameReader(1 << 20, {
      binary: (bytes) => delivered.push(bytes),
      text: () => undefined,
      ping: () => undefined,
      close: () => undefined,
      fail: () => undefined,
    });
    const [a, b, c] = [pattern(40_000, 1), pattern(40_000, 2), pattern(40_000, 3)];
    const feed = (frame: Buffer) => reader.feed(frame, 0, frame.length);
    feed(rawFrame(Op.binary, a));
    feed(rawFrame(Op.binary, new Uint8Array(0)));
    const frameB = rawFrame(Op.binary, b);
    // Half of b has arrived: a is still intact.
    reader.feed(frameB, 0, 20_000);
    expect(digest(delivered[0]!)).toBe(digest(a));
    reader.feed(frameB, 20_000, frameB.length);
    expect(digest(delivered[0]!)).toBe(digest(a));
    expect(digest(delivered[2]!)).toBe(digest(b));
    // c takes a's turn; b stays intact.
    feed(rawFrame(Op.binary, c));
    expect(digest(delivered[2]!)).toBe(digest(b));
    expect(digest(delivered[3]!)).toBe(digest(c));
    expect(digest(delivered[0]!)).not.toBe(digest(a));
  });

  it('writes no more into a buffer whose message the consumer kept', () => {
    const kept: Uint8Array[] = [];
    const reader = new FrameReader(1 << 20, {
      binary: (bytes) => kept.push(framePool.keep(bytes)),
      text: () => undefined,
      ping: () => undefined,
      close: () => undefined,
      fail: () => undefined,
    });
    const payloads = [1, 2, 3, 4, 5].map((seed) => pattern(40_000, seed));
    for (const payload of payloads) {
      const frame = rawFrame(Op.binary, payload);
      reader.feed(frame, 0, frame.length);
    }
    expect(kept.map(digest)).toEqual(payloads.map(digest));
    expect(new Set(kept.map((bytes) => bytes.buffer)).size).toBe(5);
    for (const frame of kept) framePool.release(frame);
  });

  it('joins fragments into one message and delivers a control frame between them', () => {
    const { feed, events } = recorder();
    const big = pattern(5_000, 9);
    feed(rawFrame(Op.binary, big.subarray(0, 100), { fin: false }));
    feed(rawFrame(Op.ping, 'are you there'));
    feed(rawFrame(Op.continuation, big.subarray(100, 3_000), { fin: false }));
    feed(rawFrame(Op.continuation, big.subarray(3_000)));
    feed(rawFrame(Op.text, 'hé', { fin: false }));
    feed(rawFrame(Op.continuation, 'llo'));
    expect(events).toEqual([
      { ping: [...Buffer.from('are you there')] },
      { binary: digest(big) },
      { text: 'héllo' },
    ]);
  });

  it('reads a close frame with its code and reason, and nothing after it', () => {
    const { feed, events } = recorder();
    feed(Buffer.concat([rawFrame(Op.close, closePayload(4000, 'bye')), rawFrame(Op.binary, 'late')]));
    expect(events).toEqual([{ close: [4000, 'bye'] }]);
  });

  it('reads an empty close frame as 1005', () => {
    const { feed, events } = recorder();
    feed(rawFrame(Op.close, ''));
    expect(events).toEqual([{ close: [1005, ''] }]);
  });

  it('fails with 1009 on a message over the limit before reading its payload', () => {
    const { feed, events } = recorder(1_000);
    feed(rawFrame(Op.binary, pattern(1_000, 1)));
    feed(rawFrame(Op.binary, new Uint8Array(0), { announcedLength: 1_001 }));
    feed(rawFrame(Op.binary, 'never read'));
    expect(events).toEqual([{ binary: digest(pattern(1_000, 1)) }, { fail: [1009, 'Max payload size exceeded'] }]);
  });

  it('fails with 1009 when fragments add up to more than the limit', () => {
    const { feed, events } = recorder(1_000);
    feed(rawFrame(Op.binary, pattern(600, 1), { fin: false }));
    feed(rawFrame(Op.continuation, pattern(600, 2)));
    expect(events).toEqual([{ fail: [1009, 'Max payload size exceeded'] }]);
  });

  it('fails with 1009 on a length past 2^53 - 1', () => {
    const { feed, events } = recorder();
    const frame = rawFrame(Op.binary, '', { announcedLength: 70_000 });
    frame.writeBigUInt64BE(2n ** 60n, 2);
    feed(frame);
    expect(events).toEqual([{ fail: [1009, 'Unsupported WebSocket frame: payload length > 2^53 - 1'] }]);
  });

  it.each([
    ['an unmasked frame', rawFrame(Op.binary, 'x', { unmasked: true }), 'Invalid WebSocket frame: MASK must be set'],
    ['RSV bits', rawFrame(Op.binary, 'x', { rsv: 4 }), 'Invalid WebSocket frame: RSV1, RSV2 and RSV3 must be clear'],
    ['an unknown opcode', rawFrame(3, 'x'), 'Invalid WebSocket frame: invalid opcode 3'],
    ['a continuation with nothing to continue', rawFrame(Op.continuation, 'x'), 'Invalid WebSocket frame: invalid opcode 0'],
    ['a fragmented control frame', rawFrame(Op.ping, 'x', { fin: false }), 'Invalid WebSocket frame: FIN must be set'],
    ['a control frame over 125 bytes', rawFrame(Op.ping, 'x'.repeat(126)), 'Invalid WebSocket frame: invalid payload length 126'],
    ['a close frame of one byte', rawFrame(Op.close, 'x'), 'Invalid WebSocket frame: invalid payload length 1'],
    ['a reserved close code', rawFrame(Op.close, closePayload(1005)), 'Invalid WebSocket frame: invalid status code 1005'],
  ])('fails with 1002 on %s', (_what, frame, reason) => {
    const { feed, events } = recorder();
    feed(Buffer.concat([frame, rawFrame(Op.binary, 'after')]));
    expect(events).toEqual([{ fail: [1002, reason] }]);
  });

  it('fails with 1002 on a new message in the middle of a fragmented one', () => {
    const { feed, events } = recorder();
    feed(rawFrame(Op.binary, 'part', { fin: false }));
    feed(rawFrame(Op.text, 'other'));
    expect(events).toEqual([{ fail: [1002, 'Invalid WebSocket frame: invalid opcode 1'] }]);
  });

  it('fails with 1007 on text or a close reason that is not UTF-8', () => {
    const bad = Buffer.from([0x68, 0xc3, 0x28]);
    const text = recorder();
    text.feed(rawFrame(Op.text, bad));
    expect(text.events).toEqual([{ fail: [1007, 'Invalid WebSocket frame: invalid UTF-8 sequence'] }]);
    const close = recorder();
    close.feed(rawFrame(Op.close, Buffer.concat([closePayload(1000), bad])));
    expect(close.events).toEqual([{ fail: [1007, 'Invalid WebSocket frame: invalid UTF-8 sequence'] }]);
  });
});
