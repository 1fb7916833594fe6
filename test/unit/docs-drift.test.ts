// Docs that restate a list from the code say the same as the code: a new
// replicated state type must show up in docs/etcd-keys.md too.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPLICATED_TYPES } from '../../src/controlplane/kvstoremesh.js';
import { ROOT } from '../../src/testbed/netns.js';

/** The comma-separated list after "Replicated types ...:" up to the first full stop, in docs/etcd-keys.md. */
function documentedReplicatedTypes(): string[] {
  const text = readFileSync(join(ROOT, 'docs', 'etcd-keys.md'), 'utf8');
  const m = /^Replicated types[^:]*:\s*([^.]*)\./m.exec(text.replace(/`[^`]*`/g, (code) => code.replace(/[.:]/g, '_')));
  if (!m) throw new Error('docs/etcd-keys.md has no "Replicated types: a, b, c." sentence');
  return m[1]!.split(',').map((t) => t.trim());
}

describe('docs drift', () => {
  it('docs/etcd-keys.md lists the replicated types kvstoremesh replicates (REPLICATED_TYPES)', () => {
    expect(documentedReplicatedTypes().sort()).toEqual([...REPLICATED_TYPES].sort());
  });
});
