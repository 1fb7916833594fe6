// The agent's admission behind the agent's own node and endpoint sinks (src/agent/sinks.ts), fed by ListWatchers
// on a store: what an agent admits from cluster c2's cached records (c2 pinned to 100.66.0.0/16).
import { Admission } from '../../src/agent/admission.js';
import { stateWatches, type WatchTargets } from '../../src/agent/sinks.js';
import { cacheKey, endpointName } from '../../src/controlplane/keys.js';
import { ListWatcher, type KVStore } from '../../src/controlplane/kvstore.js';
import { Rejections, Trust, type EndpointRecord, type NodeRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';

const keyOf = (c: string) => c.repeat(42) + 'A=';
export const node = (name: string, podCIDRs: string[], addr: string, pk: string): NodeRecord => ({ cluster: 'c2', clusterId: 2, name, addresses: [addr], port: 51820, publicKey: keyOf(pk), podCIDRs, bootId: '1' });
export const ep = (nodeName: string, ip: string): EndpointRecord => ({ ip, cluster: 'c2', node: nodeName, namespace: 'ns', name: 'p1', labels: { app: 'x' } });
export const nodeKey = (n: string) => cacheKey('nodes', 'c2', n);
export const epKey = (n: string, ip: string) => cacheKey('ip', 'c2', endpointName(n, ip));

/** The admission, what it admitted (`seen`) and refused, and the (unstarted) ListWatchers on `store`. */
export function agentOn(store: KVStore, prefixes = ['wiremesh/cache/nodes/', 'wiremesh/cache/ip/']) {
  const trust = new Trust('c1', 1, ['100.65.0.0/16']);
  trust.pin({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false });
  const rejections = new Rejections();
  const seen = { node: new Map<string, NodeRecord>(), endpoint: new Map<string, EndpointRecord>() };
  const put = <T>(m: Map<string, T>) => (k: string, r: T | undefined) => (r ? m.set(k, r) : m.delete(k));
  // endpoint keys reach admission's sinks in its compact forms (Admission.endpointKeys): `seen` keeps their texts
  const admission: Admission = new Admission(trust, rejections, { node: put(seen.node), endpoint: (k, r) => put(seen.endpoint)(admission.endpointKeys.full(k), r), identity: () => undefined, relay: () => undefined });
  const rows = stateWatches(targetsOf(trust, rejections, admission)).filter((w) => prefixes.some((p) => w.prefix.startsWith(p)));
  const watchers = rows.map((w) => new ListWatcher(store, w.prefix, w.sink));
  return { seen, rejections, watchers };
}

/** The watch targets of cluster c1's agent around `admission` (peers, lag and status left out). */
export function targetsOf(trust: Trust, rejections: Rejections, admission: Admission): WatchTargets {
  return {
    cluster: { name: 'c1', id: 1 },
    trust,
    rejections,
    admission,
    peers: { setSynced: () => undefined, setRelayEnabled: () => undefined, queue: () => undefined },
    syncLag: new Map(),
    remoteStatus: new Map(),
    log: silentLogger,
  };
}
