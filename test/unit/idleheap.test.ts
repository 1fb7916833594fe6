import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { IDLE_HEAP_FLAGS, quietIdleHeap } from '../../src/cli/idleheap.js';

// v8.setFlagsFromString ignores a flag V8 does not know, so a Node upgrade that renamed or removed it would turn
// kvstoremesh's idle-heap setting into nothing, silently. V8 refuses an unknown flag on the command line: that is
// the oracle (checked on a made-up flag first, so that the acceptance below means something).
describe('quietIdleHeap (kvstoremesh at rest)', () => {
  const run = (flag: string) => spawnSync(process.execPath, [flag, '-e', '0'], { encoding: 'utf8' });

  it('names a flag this Node/V8 knows', () => {
    const unknown = run('--no-such-v8-flag-for-wiremesh');
    expect(unknown.status).not.toBe(0);
    expect(unknown.stderr).toMatch(/bad option/);
    // Node 20 knows the first, Node 22/24 the second: exactly one is this Node's.
    const known = IDLE_HEAP_FLAGS.filter((flag) => {
      const r = run(flag);
      return r.status === 0 && r.stderr === '';
    });
    expect(known).toHaveLength(1);
  });

  it('limits the memory reducer to one collection per burst (does not turn it, or any collector, off)', () => {
    expect(IDLE_HEAP_FLAGS).toEqual(['--memory-reducer-single-gc', '--memory-reducer-gc-count=1']);
    expect(() => quietIdleHeap()).not.toThrow();
  });
});
