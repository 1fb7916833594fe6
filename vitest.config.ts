import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // netns tests share interface names and ports: one file at a time.
    fileParallelism: false,
    pool: 'forks',
  },
});
