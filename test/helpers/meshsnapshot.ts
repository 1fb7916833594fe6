// What `clustermesh connect` could change on one side, as one comparable string: every key and value, the store's
// revision, users, roles and the PKI folder's files. Tests of refusals compare one taken before with one after.
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import type { ClusterAccess } from '../../src/controlplane/clustermesh.js';
import { connectEtcd } from '../../src/controlplane/kvstore.js';
import { loopbackEtcd } from './loopback-etcd.js';

/** Each side's state as connect could change it: keys and values, revision, users, roles, PKI files. */
export async function snapshot(access: ClusterAccess): Promise<string> {
  const c = connectEtcd({ endpoints: access.endpoints });
  try {
    const r = await c.getAll().prefix('').exec();
    const kvs = r.kvs.map((kv) => `${kv.key.toString()}=${kv.value.toString()}`);
    const users = (await c.getUsers()).map((u) => u.name).sort();
    const roles = (await c.getRoles()).map((u) => u.name).sort();
    const dir = access.pkiDir;
    const files = dir ? readdirSync(dir).sort().map((f) => `${f}:${statSync(join(dir, f)).mtimeMs}`) : [];
    return JSON.stringify({ revision: r.header.revision, kvs, users, roles, files });
  } finally {
    c.close();
  }
}

/**
 * Two real etcds on loopback (one per cluster, `portBases` as loopbackEtcd's) and a PKI folder for each, all
 * stopped and removed after the calling describe block.
 */
export function etcdPair(name: string, portBases: [number, number]): { etcds: Array<ReturnType<typeof loopbackEtcd>>; dirs: string[] } {
  const etcds = [loopbackEtcd(`${name}-a`, portBases[0]), loopbackEtcd(`${name}-b`, portBases[1])];
  const dirs = [mkdtempSync(join(tmpdir(), `wm-${name}-a-`)), mkdtempSync(join(tmpdir(), `wm-${name}-b-`))];
  afterAll(async () => {
    for (const e of etcds) await e.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  return { etcds, dirs };
}
