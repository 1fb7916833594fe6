/**
 * A machine-wide lock for tests that use a resource only one run may hold at a
 * time: the docker-compose testbed's fixed underlay subnet (198.18.100.0/24) and
 * the dockerd it may start. Two runs of the suite on one machine (a developer's
 * background run and CI's) otherwise collide ("Pool overlaps with other one on
 * this address space"), or the first to finish stops the dockerd the other uses.
 *
 * The lock is flock(2) on a file, held by a `flock` child whose command waits
 * for end of file on its stdin, a pipe from this process: however this process
 * ends (even SIGKILL), the pipe closes, the child exits and the kernel drops the
 * lock. No stale lock file can outlive its run, so whoever holds the lock is the
 * only run using the resource, and may clean up what a killed run left behind.
 */
import { spawn } from 'node:child_process';

export interface HostLock {
  /** Lets the lock go (ends the holding child). Idempotent. */
  release(): void;
}

/**
 * Resolves once the lock on path is held; rejects when it is not held within
 * timeoutMs (flock's -w, whole seconds) or `flock` cannot run.
 */
export function acquireHostLock(path: string, timeoutMs: number): Promise<HostLock> {
  const waitS = String(Math.max(1, Math.ceil(timeoutMs / 1000)));
  // `cat >/dev/null` holds the lock until our end of its stdin closes
  const child = spawn('flock', ['-x', '-w', waitS, path, 'sh', '-c', 'echo held; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.stdout!.once('data', () => {
      let released = false;
      resolve({
        release: () => {
          if (released) return;
          released = true;
          child.stdin!.end();
        },
      });
    });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`flock ${path}: exit ${code} before the lock was held (${timeoutMs} ms)${err ? `: ${err.trim()}` : ''}`)));
  });
}
