// Types of the test runtime's bindings: the Worker's own, with the test double behind BACKEND.
import type { D1Migration } from 'cloudflare:test';
import type { Env as WorkerEnv } from '../src/env.ts';
import type { FakeBackend } from './fake-backend.ts';

export interface TestEnv extends Omit<WorkerEnv, 'BACKEND'> {
  BACKEND: DurableObjectNamespace<FakeBackend>;
  TEST_MIGRATIONS: D1Migration[];
  LEGACY_DB: D1Database;
}
