import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChildServer } from '../helpers/child-server.ts';
import { frame, GlassesClient } from '../helpers/ws-client.ts';
import { Op, rawFrame } from '../helpers/ws-frames.ts';

// Random and mutated request lines, headers, bodies and WebSocket frames, over raw sockets,
// against the real server in a process of its own. Bounded in time (FUZZ_MS, default 6 s per
// test) and seeded (FUZZ_SEED, printed on failure) so a failure can be replayed. Afterwards the
// process must be alive, must never have answered 500, and must serve a fresh client.

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const BUDGET_MS = Number(process.env.FUZZ_MS ?? 6_000);
const WORD = 'fuzz-word';

/** xorshift32: small, seeded, good enough to pick bytes. */
function prng(seed: number) {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)] as T;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  const chance = (p: number) => next() < p;
  return { next, int, pick, bytes, chance };
}
type Rng = ReturnType<typeof prng>;

let server: ChildServer;
beforeAll(async () => {
  server = await ChildServer.start({
    MAGIC_WORD: WORD,
    LOG_LEVEL: 'error',
    // Small limits, so random lengths cross them often.
    VISION_MAX_FRAME_BYTES: '65536',
    HTTP_HEADERS_TIMEOUT_S: '2',
    HTTP_REQUEST_TIMEOUT_S: '3',
  });
});
afterAll(() => server.stop());

const statuses = new Map<string, number>();
/** Sends `chunks` (with pauses, a reset or a half-close as the dice say) and records the status line of the answer. */
function exchange(rng: Rng, chunks: Buffer[]): Promise<void> {
  return new Promise((resolve) => {
    let head = '';
    const socket: Socket = connect(server.port, '127.0.0.1');
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      const status = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1];
      if (status) statuses.set(status, (statuses.get(status) ?? 0) + 1);
      resolve();
    };
    const timer = setTimeout(done, 1_500);
    socket.on('data', (data: Buffer) => {
      if (head.length < 64) head += data.toString('latin1');
    });
    socket.on('error', done);
    socket.on('close', done);
    socket.on('connect', async () => {
      for (const chunk of chunks) {
        if (socket.destroyed) return;
        socket.write(chunk);
        if (rng.chance(0.2)) await new Promise((r) => setTimeout(r, rng.int(20)));
      }
      if (rng.chance(0.15)) socket.resetAndDestroy();
      else if (rng.chance(0.3)) socket.end();
    });
  });
}

const METHODS = ['GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH', 'CONNECT', 'TRACE', 'G\u00e9T', '', 'GET GET'];
const PATHS = ['/', '/health', '/vision/stream', '/biometrics/upload', '/captions/upload', '/poke/send', '/metrics', '/debug/actors', '//[', '/%', '/%zz', '*', 'http://x/', '/\u00ff\u0000', '/vision/stream?magic_word=' + WORD, '/..%2f..%2f'];
const VERSIONS = ['HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/9.9', 'HTTP/1.1x', ''];
const HEADERS = [
  ['Host', 'a'],
  ['Connection', 'Upgrade'],
  ['Connection', 'close'],
  ['Upgrade', 'websocket'],
  ['Upgrade', 'WebSocket, h2c'],
  ['Sec-WebSocket-Key', 'dGhlIHNhbXBsZSBub25jZQ=='],
  ['Sec-WebSocket-Key', 'short'],
  ['Sec-WebSocket-Version', '13'],
  ['Sec-WebSocket-Version', '99'],
  ['Sec-WebSocket-Protocol', 'chat, chat'],
  ['Sec-WebSocket-Protocol', 'ch@t'],
  ['x-magic-word', WORD],
  ['x-magic-word', 'w\u00f6rd'],
  ['Content-Length', '5'],
  ['Content-Length', '-1'],
  ['Content-Length', '99999999999999999999'],
  ['Transfer-Encoding', 'chunked'],
  ['Transfer-Encoding', 'gzip, chunked'],
  ['Content-Type', 'application/json; charset=latin1'],
  ['Content-Type', 'application/json; charset="'],
  ['Content-Encoding', 'br'],
  ['Idempotency-Key', '"k"'],
  ['x-modal-token-id', 'ak'],
  ['x-modal-app-name', 'a\u0001b'],
  ['Expect', '100-continue'],
] as const;

/** A request made of random parts, some valid, some not, sometimes with random bytes spliced in. */
function randomRequest(rng: Rng): Buffer[] {
  const lines = [`${rng.pick(METHODS)} ${rng.chance(0.1) ? rng.bytes(rng.int(40)).toString('latin1') : rng.pick(PATHS)} ${rng.pick(VERSIONS)}`];
  for (let i = rng.int(12); i > 0; i--) {
    if (rng.chance(0.1)) lines.push(`${rng.bytes(rng.int(10) + 1).toString('latin1')}: ${rng.bytes(rng.int(30)).toString('latin1')}`);
    else {
      const [name, value] = rng.pick(HEADERS);
      lines.push(`${name}: ${value}`);
    }
  }
  if (rng.chance(0.05)) lines.push(`X-Big: ${'x'.repeat(rng.int(100_000))}`);
  const head = Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1');
  const body = rng.chance(0.5)
    ? Buffer.from(JSON.stringify({ windowId: rng.chance(0.8) ? `w${rng.int(1e6)}` : rng.int(9), timestamp: rng.pick([1, -1, Number.POSITIVE_INFINITY, '1', null]), durationMs: rng.int(60_000), message: 'x'.repeat(rng.int(2_000)) }))
    : rng.bytes(rng.int(300));
  const whole = Buffer.concat([head, body]);
  // Mutate: flip a few bytes.
  for (let i = rng.chance(0.3) ? rng.int(4) + 1 : 0; i > 0; i--) whole[rng.int(whole.length)] = rng.int(256);
  // Split at random points, so the parser sees every cut.
  const chunks: Buffer[] = [];
  for (let at = 0; at < whole.length; ) {
    const size = rng.chance(0.5) ? whole.length - at : rng.int(64) + 1;
    chunks.push(whole.subarray(at, at + size));
    at += size;
  }
  return chunks;
}

const HANDSHAKE = Buffer.from(
  `GET /vision/stream HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nx-magic-word: ${WORD}\r\n\r\n`,
  'latin1',
);

/** A valid handshake, then frames: well-formed, broken, and valid ones with bytes flipped. */
function randomFrames(rng: Rng): Buffer[] {
  const frames: Buffer[] = [HANDSHAKE];
  for (let i = rng.int(20) + 1; i > 0; i--) {
    const opcode = rng.chance(0.8) ? rng.pick([Op.binary, Op.text, Op.ping, Op.pong, Op.close, Op.continuation]) : rng.int(16);
    const payload = opcode === Op.text && rng.chance(0.7) ? Buffer.from('héllo'.repeat(rng.int(10))) : rng.bytes(rng.pick([0, 1, 2, 125, 126, 200, 5_000, 70_000]));
    const bytes = rawFrame(opcode, payload, {
      fin: rng.chance(0.85),
      unmasked: rng.chance(0.05),
      rsv: rng.chance(0.05) ? rng.int(8) : 0,
      ...(rng.chance(0.05) ? { announcedLength: rng.pick([0, 126, 65_535, 65_537, 2 ** 31, 2 ** 53 - 1]) } : {}),
    });
    if (rng.chance(0.1)) bytes[rng.int(bytes.length)] = rng.int(256);
    frames.push(bytes);
  }
  return frames;
}

/** Runs `make` against the server with 16 sockets at a time until the budget is spent. */
async function fuzz(make: (rng: Rng) => Buffer[], seed: number): Promise<number> {
  const rng = prng(seed);
  const until = performance.now() + BUDGET_MS;
  let sent = 0;
  while (performance.now() < until && server.alive) {
    await Promise.all(Array.from({ length: 16 }, () => exchange(rng, make(rng))));
    sent += 16;
  }
  return sent;
}

async function stillServes(): Promise<void> {
  expect(server.alive, `the server ended (seed ${SEED}):\n${server.output.slice(-2_000)}`).toBe(true);
  expect((await fetch(`${server.url}/health`)).status).toBe(200);
  const client = await GlassesClient.connect(server.url, { headers: { 'x-magic-word': WORD } });
  client.send(frame(32));
  await client.until(() => client.acks.length === 1);
  await client.close();
}

describe(`fuzzing the raw socket paths (seed ${SEED})`, () => {
  it('random and mutated HTTP requests end in an HTTP answer or a closed socket, never the process', async () => {
    const sent = await fuzz(randomRequest, SEED);
    expect(sent).toBeGreaterThan(100);
    await stillServes();
    expect(statuses.get('500'), `500s (seed ${SEED})`).toBeUndefined();
  }, BUDGET_MS + 20_000);

  it('random, broken and mutated WebSocket frames close the connection at worst, never the process', async () => {
    const sent = await fuzz(randomFrames, SEED + 1);
    expect(sent).toBeGreaterThan(100);
    await stillServes();
    expect(server.output).not.toMatch(/Uncaught|TypeError|RangeError|at .*\.ts:\d+/);
  }, BUDGET_MS + 20_000);
});
