import { loadConfig, type Config } from '../../src/config.ts';

/** A config for tests: loopback, ephemeral port, quiet logs, overridable by env-style values. */
export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent', DATABASE_PATH: ':memory:', OBSERVE_CACHE_S: '0', ...env });
}
