// `wiremesh policy trace` admits records as the agents do, the per-node endpoint bound included: it must use the
// agents' configured bound (--max-endpoints-per-node), not silently the default, and say which it assumed.
import { describe, expect, it } from 'vitest';
import type { Etcd3 } from 'etcd3';
import { clusterConfigKey, endpointName, stateKey } from '../../src/controlplane/keys.js';
import { loadMeshState, resolveEndpoint, trace } from '../../src/policy/trace.js';

/** The one etcd call loadMeshState makes: getAll().prefix(p).strings(). */
function fakeEtcd(kv: Map<string, string>): Etcd3 {
  const strings = (p: string) => async () => Object.fromEntries([...kv].filter(([k]) => k.startsWith(p)));
  return { getAll: () => ({ prefix: (p: string) => ({ strings: strings(p) }) }) } as unknown as Etcd3;
}

function state(): Map<string, string> {
  const kv = new Map<string, string>();
  kv.set(clusterConfigKey('c1'), JSON.stringify({ name: 'c1', id: 1, podCIDRs: ['100.65.0.0/16'], underlayCIDRs: ['198.18.1.0/24'] }));
  kv.set(stateKey('nodes', 'c1', 'n1'), JSON.stringify({ cluster: 'c1', clusterId: 1, name: 'n1', addresses: ['198.18.1.1'], port: 51820, publicKey: Buffer.alloc(32, 1).toString('base64'), podCIDRs: ['100.65.1.0/24'], bootId: '1' }));
  for (let i = 1; i <= 3; i++) {
    const ip = `100.65.1.${i}`;
    kv.set(stateKey('ip', 'c1', endpointName('n1', ip)), JSON.stringify({ ip, cluster: 'c1', node: 'n1', namespace: 'ns', name: `p${i}`, labels: { app: 'x' } }));
  }
  return kv;
}

describe('policy trace: the per-node endpoint bound', () => {
  it('regression: admits with the bound given, and says which bound it assumed when it held endpoints back', async () => {
    const st = await loadMeshState(fakeEtcd(state()), { maxEndpointsPerNode: 2 });
    expect(st.endpoints.map((e) => e.ip).sort()).toEqual(['100.65.1.1', '100.65.1.2']);
    expect(st.endpointBound).toEqual({ max: 2, heldBack: 1 });
    const t = trace(st, resolveEndpoint(st, 'ns/p1', 'c1'), resolveEndpoint(st, 'ns/p2', 'c1'), 'TCP', 80, true);
    expect(t.warnings.join('\n')).toMatch(/1 endpoint\(s\) held back at the per-node bound 2 trace assumed/);
  });

  it('by default, the agents\' default bound: nothing held back, no note', async () => {
    const st = await loadMeshState(fakeEtcd(state()));
    expect(st.endpoints).toHaveLength(3);
    expect(st.endpointBound).toEqual({ max: 1024, heldBack: 0 });
    const t = trace(st, resolveEndpoint(st, 'ns/p1', 'c1'), resolveEndpoint(st, 'ns/p3', 'c1'), 'TCP', 80, true);
    expect(t.warnings.join('\n')).not.toMatch(/held back/);
  });
});
