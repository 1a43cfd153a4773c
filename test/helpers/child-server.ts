import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));

/**
 * The real server in a process of its own (`node src/main.ts`, Node 22 strips the
 * types), for tests that must see whether input can end the process.
 */
export class ChildServer {
  readonly child: ChildProcess;
  url = '';
  port = 0;
  /** The inspector relay's page, when the server runs one. */
  inspectorUrl: string | undefined;
  /** stdout and stderr, as they came. */
  output = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly exited: Promise<void>;

  private constructor(env: Record<string, string>, entry = MAIN) {
    this.child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', entry], {
      env: { ...process.env, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'warn', DATABASE_PATH: ':memory:', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (data: Buffer) => (this.output += data.toString()));
    this.child.stderr?.on('data', (data: Buffer) => (this.output += data.toString()));
    this.exited = once(this.child, 'exit').then(([code, signal]) => {
      this.exit = { code: code as number | null, signal: signal as NodeJS.Signals | null };
    });
  }

  /** Starts `src/main.ts` (or `entry`) and waits for its `ready` line; rejects if it exits first. */
  static async start(env: Record<string, string> = {}, entry?: string): Promise<ChildServer> {
    const server = new ChildServer(env, entry);
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        const ready = /\{"msg":"ready","url":"(http:\/\/[^"]+)"/.exec(server.output);
        if (ready) {
          server.url = ready[1] as string;
          server.inspectorUrl = /"inspector":"(http:\/\/[^"]+)"/.exec(server.output)?.[1];
          server.port = Number(new URL(server.url).port);
          resolve();
        } else if (server.exit) {
          reject(new Error(`server exited (${server.exit.code ?? server.exit.signal}) before ready:\n${server.output}`));
        } else {
          setTimeout(check, 20);
        }
      };
      check();
    });
    return server;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  /** Resolves with how the process ended. */
  async ended() {
    await this.exited;
    return this.exit as NonNullable<ChildServer['exit']>;
  }

  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.alive) this.child.kill(signal);
    await this.exited;
  }
}
