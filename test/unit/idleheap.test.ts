import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { IDLE_HEAP_FLAGS, idleHeapFlag, quietIdleHeap } from '../../src/cli/idleheap.js';
import { ROOT } from '../../src/testbed/netns.js';

// v8.setFlagsFromString ignores a flag V8 does not know (printing "Error: unrecognized flag" to stderr), so a Node
// upgrade that renamed or removed it would turn kvstoremesh's idle-heap setting into nothing. V8 refuses an
// unknown flag on the command line: that is the oracle (checked on a made-up flag first, so that the acceptance
// below means something).
describe('quietIdleHeap (kvstoremesh at rest)', () => {
  const run = (args: string[]) => spawnSync(process.execPath, args, { encoding: 'utf8' });
  const known = (flag: string) => {
    const r = run([flag, '-e', '0']);
    return r.status === 0 && r.stderr === '';
  };

  it("picks the flag this Node's V8 knows, and only that one", () => {
    expect(known('--no-such-v8-flag-for-wiremesh')).toBe(false);
    // Node 20 knows the first, Node 22/24 the second: exactly one is this Node's, and it is the one picked.
    const mine = IDLE_HEAP_FLAGS.filter(known);
    expect(mine).toEqual([idleHeapFlag(process.versions.v8)]);
    expect([idleHeapFlag('11.3.244.8-node.38'), idleHeapFlag('12.4.254.21-node.33'), idleHeapFlag('13.6.233.17-node.53')]).toEqual([
      '--memory-reducer-single-gc',
      '--memory-reducer-gc-count=1',
      '--memory-reducer-gc-count=1',
    ]);
  });

  it('limits the memory reducer to one collection per burst, and says nothing on stderr', () => {
    expect(IDLE_HEAP_FLAGS).toEqual(['--memory-reducer-single-gc', '--memory-reducer-gc-count=1']);
    expect(() => quietIdleHeap()).not.toThrow();
    // quietIdleHeap in a process of its own (an unknown flag prints there), the compiled module as `prepare` leaves it
    const built = join(ROOT, 'dist/src/cli/idleheap.js');
    expect(existsSync(built), `${built} missing: run \`npm run prepare\``).toBe(true);
    const r = run(['--input-type=module', '-e', `import { quietIdleHeap } from ${JSON.stringify(built)}; quietIdleHeap();`]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
