// The real server with the benchmark's fake model (answers every chunk after FAKE_MODEL_MS),
// run as a process of its own by tests that must kill it (ChildServer.start(env, this file)).
import { fixedLatencyInference } from '../../bench/fixed-latency-inference.ts';
import { createLogger } from '../../src/adapters/logger.ts';
import { loadConfig } from '../../src/config.ts';
import { startServer } from '../../src/server.ts';

const config = loadConfig(process.env);
const stats = { chunks: 0, frames: 0, bytes: 0, framesSeen: 0 };
const server = await startServer({
  config,
  inference: fixedLatencyInference(Number(process.env.FAKE_MODEL_MS ?? 10), stats),
  logger: createLogger(config.logLevel),
});
process.stdout.write(`${JSON.stringify({ msg: 'ready', url: server.url })}\n`);
