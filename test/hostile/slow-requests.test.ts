import { connect } from 'node:net';
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
