// memorysettings.ts: the agent's start-up report of README's memory settings, from its V8 flags and environment.
// Oracle: Node's documented flag forms (--flag=value, the value as the next word, '_' for '-') and glibc's
// documented GLIBC_TUNABLES syntax (name=value pairs separated by ':'), written out by hand here.
import { describe, expect, it } from 'vitest';
import { memorySettings } from '../../src/agent/memorysettings.js';

describe('memorySettings', () => {
  it("reads the launchers' settings", () => {
    expect(memorySettings(['--max-semi-space-size=1'], { MALLOC_ARENA_MAX: '2' })).toEqual({ maxSemiSpaceMiB: '1', mallocArenaMax: '2' });
  });

  it('reads the flag in every form Node takes, from NODE_OPTIONS too', () => {
    expect(memorySettings(['--max-semi-space-size', '4'], {}).maxSemiSpaceMiB).toBe('4');
    expect(memorySettings(['--max_semi_space_size=2'], {}).maxSemiSpaceMiB).toBe('2');
    expect(memorySettings([], { NODE_OPTIONS: '--expose-gc  --max-semi-space-size=8' }).maxSemiSpaceMiB).toBe('8');
    // a flag that only starts alike is another flag
    expect(memorySettings(['--max-semi-space-size-x=1', '--semi-space-growth-factor=2'], {}).maxSemiSpaceMiB).toBeUndefined();
  });

  it("reads glibc's tunable when MALLOC_ARENA_MAX is not set, and the variable first when both are", () => {
    expect(memorySettings([], { GLIBC_TUNABLES: 'glibc.malloc.tcache_count=0:glibc.malloc.arena_max=4' }).mallocArenaMax).toBe('4');
    expect(memorySettings([], { GLIBC_TUNABLES: 'glibc.malloc.arena_max=4', MALLOC_ARENA_MAX: '2' }).mallocArenaMax).toBe('2');
    expect(memorySettings([], { GLIBC_TUNABLES: 'glibc.malloc.arena_test=4' }).mallocArenaMax).toBeUndefined();
  });

  it('reports neither when neither is set', () => {
    expect(memorySettings(['--expose-gc'], { NODE_OPTIONS: '' })).toEqual({ maxSemiSpaceMiB: undefined, mallocArenaMax: undefined });
  });
});
