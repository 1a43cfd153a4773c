import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'node',
          include: ['test/**/*.test.ts'],
          environment: 'node',
          testTimeout: 20_000,
          hookTimeout: 20_000,
        },
      },
      // The Worker's tests run in workerd (see worker/vitest.config.ts).
      './worker/vitest.config.ts',
    ],
  },
});
