/**
 * A testbed that a program brings up and owns until it exits (the demo tour,
 * the chaos runner): the servers it started in pods are killed and the testbed
 * torn down exactly once, whether the program finishes, fails or is stopped
 * with Ctrl-C (then it exits 130, as a shell reports SIGINT).
 */
import type { ChildProcess } from 'node:child_process';
import { testbedDown } from './testbed.js';

export interface OwnedTestbed {
  /** Processes the program starts in pods: killed (SIGKILL) before the teardown. */
  servers: ChildProcess[];
  /** Idempotent; never rejects (a failed teardown is printed on stderr). */
  teardown: () => Promise<void>;
}

/**
 * file: the topology the program brings up (testbedUp) itself.
 * before: runs once, first (e.g. says what is happening); after: once, last (e.g. removes a temp dir).
 */
export function ownTestbed(file: string, hooks: { before?: () => void; after?: () => void } = {}): OwnedTestbed {
  const servers: ChildProcess[] = [];
  let down = false;
  const teardown = async () => {
    if (down) return;
    down = true;
    for (const s of servers) s.kill('SIGKILL');
    hooks.before?.();
    await testbedDown(file).catch((err: Error) => console.error(`teardown: ${err.message}`));
    hooks.after?.();
  };
  process.once('SIGINT', () => void teardown().then(() => process.exit(130)));
  return { servers, teardown };
}
