// The host lock that keeps two runs of the docker-compose testbed apart
// (src/testbed/hostlock.ts): held by one at a time, let go on release, and let
// go by the kernel when its holder is killed (no stale lock outlives a run).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireHostLock } from '../../src/testbed/hostlock.js';
import { ROOT } from '../../src/testbed/netns.js';

const dir = mkdtempSync(join(tmpdir(), 'wm-hostlock-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hasFlock = spawnSync('flock', ['--version']).status === 0;

describe.skipIf(!hasFlock)('acquireHostLock', () => {
  it('one holder at a time; a waiter gets it once the holder releases', async () => {
    const path = join(dir, 'a.lock');
    const first = await acquireHostLock(path, 5_000);
    await expect(acquireHostLock(path, 1_000)).rejects.toThrow(/before the lock was held/);
    const waiting = acquireHostLock(path, 10_000);
    first.release();
    first.release(); // idempotent
    const second = await waiting;
    second.release();
  });

  it('a holder killed with SIGKILL leaves no lock behind', async () => {
    const path = join(dir, 'b.lock');
    // another process (the compiled module, as `npm run build`/`prepare` leave it) takes the lock,
    // says so, and is then killed without releasing it
    const script = `import { acquireHostLock } from ${JSON.stringify(join(ROOT, 'dist/src/testbed/hostlock.js'))};
await acquireHostLock(${JSON.stringify(path)}, 5000); console.log('held'); setInterval(() => {}, 1000);`;
    const built = join(ROOT, 'dist/src/testbed/hostlock.js');
    expect(existsSync(built), `${built} missing: run \`npm run prepare\``).toBe(true);
    const holder = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((resolve, reject) => {
        holder.stdout!.once('data', () => resolve());
        holder.once('exit', (code) => reject(new Error(`the holder exited (${code}) before holding the lock`)));
      });
      await expect(acquireHostLock(path, 1_000)).rejects.toThrow(/before the lock was held/);
    } finally {
      holder.kill('SIGKILL');
    }
    const after = await acquireHostLock(path, 10_000);
    after.release();
  });
});
