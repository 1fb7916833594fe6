// The etcd roles as data (src/controlplane/rbac.ts): what each grant covers,
// checked without etcd (test/netns/compromised-node.test.ts asks etcd itself).
import { describe, expect, it } from 'vitest';
import { cacheKey, clusterConfigKey, endpointName, epochKey, healthKey, identityIndexKey, identityRefKey, pinnedKey, remoteKey, remoteStatusKey, stateKey, syncedKey } from '../../src/controlplane/keys.js';
import { kvstoremeshRole, nodeRole, observerRole, remoteReaderRole, type Grant, type RoleSpec } from '../../src/controlplane/rbac.js';

const covers = (g: Grant, key: string) => ('key' in g ? g.key === key : key.startsWith(g.prefix));
const can = (r: RoleSpec, what: 'read' | 'write', key: string) =>
  r.grants.some((g) => covers(g, key) && (g.permission === 'ReadWrite' || g.permission === (what === 'read' ? 'Read' : 'Write')));

describe('etcd roles', () => {
  const n1 = nodeRole('c1', 'n1');

  it("an agent writes its own records and the cluster's identity allocation, nothing of another node", () => {
    for (const k of [stateKey('nodes', 'c1', 'n1'), stateKey('gateways', 'c1', 'n1'), stateKey('relays', 'c1', 'n1'), healthKey('c1', 'n1'), stateKey('ip', 'c1', endpointName('n1', '100.65.1.10')), identityRefKey('c1', 65836, 'n1'), stateKey('identities', 'c1', '65836'), identityIndexKey('c1', 'ab')])
      expect(can(n1, 'write', k), k).toBe(true);
    for (const k of [stateKey('nodes', 'c1', 'n2'), stateKey('nodes', 'c1', 'n10'), stateKey('gateways', 'c1', 'n2'), stateKey('relays', 'c1', 'n2'), healthKey('c1', 'n2'), stateKey('ip', 'c1', endpointName('n2', '100.65.2.10')), stateKey('ip', 'c1', endpointName('n10', '100.65.2.10')), identityRefKey('c1', 65836, 'n2'), stateKey('nodes', 'c2', 'n1'), stateKey('identities', 'c2', '1'), stateKey('services', 'c1', 'shop/web'), stateKey('policies', 'c1', 'shop/x'), stateKey('heartbeat', 'c1', 'kvstoremesh'), cacheKey('nodes', 'c2', 'n1'), syncedKey('c2', 'nodes'), clusterConfigKey('c1'), remoteKey('c2'), pinnedKey('c2'), remoteStatusKey('c2'), epochKey('c2')])
      expect(can(n1, 'write', k), k).toBe(false);
  });

  it('only kvstoremesh reads the remotes (they hold credentials), and it cannot write them', () => {
    expect(can(n1, 'read', remoteKey('c2'))).toBe(false);
    expect(can(observerRole(), 'read', remoteKey('c2'))).toBe(false);
    expect(can(remoteReaderRole(), 'read', remoteKey('c2'))).toBe(false);
    expect(can(kvstoremeshRole('c1'), 'read', remoteKey('c2'))).toBe(true);
    expect(can(kvstoremeshRole('c1'), 'write', remoteKey('c2'))).toBe(false);
  });

  it('kvstoremesh writes the cache and its heartbeat but no cluster state; observers write nothing', () => {
    const km = kvstoremeshRole('c1');
    for (const k of [cacheKey('nodes', 'c2', 'n1'), syncedKey('c2', 'ip'), remoteStatusKey('c2'), epochKey('c2'), stateKey('heartbeat', 'c1', 'kvstoremesh'), stateKey('identities', 'c1', '65836'), identityIndexKey('c1', 'ab')])
      expect(can(km, 'write', k), k).toBe(true);
    for (const k of [stateKey('nodes', 'c1', 'n1'), stateKey('ip', 'c1', endpointName('n1', '100.65.1.10')), identityRefKey('c1', 65836, 'n1'), clusterConfigKey('c1'), pinnedKey('c2')])
      expect(can(km, 'write', k), k).toBe(false);
    expect(can(km, 'read', identityRefKey('c1', 65836, 'n1'))).toBe(true);
    // the purge fence (fence.ts): kvstoremesh compares and moves it; no agent, observer or remote may write it
    expect(can(km, 'read', epochKey('c2'))).toBe(true);
    for (const r of [n1, observerRole(), remoteReaderRole()]) expect(can(r, 'write', epochKey('c2'))).toBe(false);
    expect(observerRole().grants.every((g) => g.permission === 'Read')).toBe(true);
    expect(remoteReaderRole().grants).toEqual([{ permission: 'Read', prefix: 'wiremesh/state/' }]);
  });

  it('refuses node names that would widen a prefix', () => {
    expect(() => nodeRole('c1', '')).toThrow();
    expect(() => nodeRole('c1', 'n1/')).toThrow();
    expect(() => nodeRole('c1', 'N1')).toThrow();
  });
});
