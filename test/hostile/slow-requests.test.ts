import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../../src/server.ts';
import { testConfig } from '../helpers/config.ts';

// Finding 15: slow headers were held 73-90 s and a trickled upload 330 s before a 408; a body
// declared over the limit was read before it was refused.

let server: RunningServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

/** Writes `head` at once, then `drip` one byte every `everyMs` for as long as the server listens; resolves with its answer and when it came. */
function trickle(port: number, head: string, drip: string, everyMs: number): Promise<{ answer: string; ms: number }> {
  return new Promise((resolve) => {
    const started = performance.now();
    let answer = '';
    let timer: NodeJS.Timeout | undefined;
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(head);
      let i = 0;
      timer = setInterval(() => socket.write(drip[i++ % drip.length] as string), everyMs);
    });
    socket.on('data', (data) => (answer += data.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ answer, ms: performance.now() - started });
    });
  });
}

describe('slow requests (finding 15)', () => {
  it('answers 408 to headers still trickling in after HTTP_HEADERS_TIMEOUT_S', async () => {
    server = await startServer({ config: testConfig({ HTTP_HEADERS_TIMEOUT_S: '1', HTTP_REQUEST_TIMEOUT_S: '5' }) });
    const { answer, ms } = await trickle(server.port, 'GET /health HTTP/1.1\r\nHost: a\r\nX-Slow: ', 'abc', 100);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(ms).toBeLessThan(2_500);
  });

  it('answers 408 to a body still trickling in after HTTP_REQUEST_TIMEOUT_S', async () => {
    server = await startServer({ config: testConfig({ HTTP_HEADERS_TIMEOUT_S: '1', HTTP_REQUEST_TIMEOUT_S: '1.5' }) });
    const head = 'POST /captions/upload HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n';
    const { answer, ms } = await trickle(server.port, head, '{"windowId":"x"', 100);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(ms).toBeLessThan(3_000);
  });

  it('refuses a body declared over the limit before reading it, and closes the connection', async () => {
    server = await startServer({ config: testConfig() });
    const head = 'POST /captions/upload HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n';
    // Nothing of the gigabyte is sent: the answer must not wait for it.
    const { answer, ms } = await trickle(server.port, head, ' ', 1_000);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer.toLowerCase()).toContain('connection: close');
    expect(answer).toContain('{"success":false,"error":"body: larger than 262144 bytes"}');
    expect(ms).toBeLessThan(1_500);
  });
});

describe('many slow bodies at once (HTTP_MAX_BODY_BYTES_IN_FLIGHT)', () => {
  it('answers 503 unread once the bodies being read add up to the budget, and admits again when one ends', async () => {
    server = await startServer({ config: testConfig({ HTTP_MAX_BODY_BYTES_IN_FLIGHT: String(2 * 262_144) }) });
    const body = readFileSync(new URL('../fixtures/real-clients/app-full.json', import.meta.url));
    const upload = () =>
      fetch(`${server!.url}/biometrics/upload`, { method: 'POST', headers: { 'content-type': 'application/json; charset=UTF8' }, body });
    // Two uploads that declare the largest body and send none of it.
    const holders: Socket[] = [0, 1].map(() => {
      const socket = connect(server!.port, '127.0.0.1', () =>
        socket.write('POST /biometrics/upload HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 262144\r\n\r\n{'),
      );
      socket.on('error', () => undefined);
      return socket;
    });
    try {
      let refused: Response | undefined;
      await expect
        .poll(async () => {
          const answer = await upload();
          if (answer.status === 503) refused = answer;
          return answer.status;
        })
        .toBe(503);
      expect(refused!.headers.get('retry-after')).toBe('1');
      expect(await refused!.json()).toEqual({ detail: 'server busy: too many request bodies being read' });
      holders[0]!.destroy();
      await expect.poll(async () => (await upload()).status).toBe(200);
    } finally {
      for (const socket of holders) socket.destroy();
    }
  });
});
