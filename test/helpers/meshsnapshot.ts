// What `clustermesh connect` could change on one side, as one comparable string: every key and value, the store's
// revision, users, roles and the PKI folder's files. Tests of refusals compare one taken before with one after.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { ClusterAccess } from '../../src/controlplane/clustermesh.js';
import { connectEtcd } from '../../src/controlplane/kvstore.js';

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
