import { createLogger } from './adapters/logger.ts';
import { ConfigError, loadConfig, type Config } from './config.ts';
import { startServer } from './server.ts';
import { StartupError } from './startup-error.ts';

/** Whole-process budget for a graceful stop; SPEC §4 asks for exit 0 within 10 s. */
const SHUTDOWN_BUDGET_MS = 9_000;

function readConfig(): Config {
  try {
    // `npm start -- --inspect` is INSPECT=1.
    const env = process.argv.includes('--inspect') ? { ...process.env, INSPECT: '1' } : process.env;
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
}

const config = readConfig();
const logger = createLogger(config.logLevel);
const server = await startServer({ config, logger }).catch((error: unknown) => {
  // A reason a person must fix (a database it cannot open, a Node it cannot run on): one line, no stack.
  if (error instanceof StartupError) {
    process.stderr.write(`cannot start: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
});
process.stdout.write(
  `${JSON.stringify({
    msg: 'ready',
    url: server.url,
    vision: `${server.url.replace(/^http/, 'ws')}/vision/stream`,
    ...(server.inspectorUrl ? { inspector: server.inspectorUrl } : {}),
  })}\n`,
);

let stopping = false;
const stop = (signal: NodeJS.Signals) => {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'shutting down');
  const hardStop = setTimeout(() => process.exit(0), SHUTDOWN_BUDGET_MS + 500);
  hardStop.unref();
  server
    .close(SHUTDOWN_BUDGET_MS - 1_000)
    .then(() => process.exit(0))
    .catch((error: unknown) => {
      logger.error({ err: String(error) }, 'shutdown failed');
      process.exit(0);
    });
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
