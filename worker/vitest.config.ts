import { fileURLToPath } from 'node:url';
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';

// The Worker's tests run in workerd with a real D1 (migrations from ../migrations).
// No container runs here: the BACKEND binding is FakeBackend (test/fake-backend.ts),
// a Durable Object that answers like the Node server would.
export default defineConfig(async () => ({
  root: fileURLToPath(new URL('.', import.meta.url)),
  plugins: [
    cloudflareTest({
      main: './test/entry.ts',
      miniflare: {
        compatibilityDate: '2026-11-01',
        compatibilityFlags: ['nodejs_compat'],
        // LEGACY_DB: a second database for the upgrade test, made by the previous system's migrations.
        d1Databases: ['DB', 'LEGACY_DB'],
        durableObjects: { BACKEND: 'FakeBackend' },
        bindings: {
          MAGIC_WORD: 'test-magic-word',
          POKE_API_KEY: 'pk-worker-secret',
          POKE_API_URL: 'https://poke.test/api/v1/inbound-sms/webhook',
          MODAL_TOKEN_ID: 'ak-worker-id',
          MODAL_TOKEN_SECRET: 'as-worker-secret',
          MODAL_APP_NAME: 'foresight-gemma3-vlm',
          MODAL_CLASS_NAME: 'Gemma3VLMSession',
          OPENAI_API_KEY: 'sk-worker-openai',
          INTERVENTION_MODEL: 'gpt-4o-mini',
          INTERVENTION_NUDGE_COOLDOWN_S: '300',
          BACKEND_INSTANCES: '3',
          TEST_MIGRATIONS: await readD1Migrations(fileURLToPath(new URL('../migrations', import.meta.url))),
        },
      },
    }),
  ],
  test: {
    name: 'worker',
    include: ['test/**/*.test.ts'],
    setupFiles: ['./test/apply-migrations.ts'],
    testTimeout: 20_000,
  },
}));
