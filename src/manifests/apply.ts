/**
 * `wiremesh apply -f FILE --cluster NAME`: validates every manifest in FILE
 * (nothing is stored if one is invalid) and stores them in that cluster's etcd
 * under wiremesh/state/{services,policies}/v1/<cluster>/...
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../errors.js';
import { stateKey } from '../controlplane/keys.js';
import { connectEtcd, type EtcdOptions } from '../controlplane/kvstore.js';
import { readClusterConfig, MeshError } from '../controlplane/clustermesh.js';
import { manifestName, parseManifests, type Manifest } from './validate.js';

export function loadManifests(files: string[]): Manifest[] {
  return files.flatMap((f) => {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (err) {
      throw new ConfigError(f, `cannot read: ${(err as Error).message}`);
    }
    return parseManifests(text, f);
  });
}

export async function applyManifests(access: EtcdOptions, cluster: string, manifests: Manifest[]): Promise<string[]> {
  const cfg = await readClusterConfig(access);
  if (cfg.name !== cluster) throw new MeshError('WM_WRONG_CLUSTER', `--cluster ${cluster}, but the etcd at ${access.endpoints.join(', ')} belongs to cluster ${cfg.name}`);
  const c = connectEtcd(access);
  try {
    const txn = c.if(stateKey('nodes', cluster, '__none__'), 'Version', '==', 0);
    const keys = manifests.map((m) => {
      const { type, name } = manifestName(m);
      return { key: stateKey(type, cluster, name), value: JSON.stringify(m) };
    });
    // one transaction: all manifests land together or none does
    await txn.then(...keys.map((k) => c.put(k.key).value(k.value))).commit();
    return manifests.map((m) => `${m.kind.toLowerCase()}/${m.metadata.namespace ? `${m.metadata.namespace}/` : ''}${m.metadata.name}`);
  } finally {
    c.close();
  }
}
