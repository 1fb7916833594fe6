/**
 * Address ownership for gateway-dns: which node records it may take gateway addresses from. The etcd it reads
 * holds that cluster's cluster-config and what the cluster pinned about each remote at connect (the observer
 * role reads both: rbac.ts); a node record is used only when Trust.node holds for it, as agents check it
 * (records/trust.ts): its addresses inside its cluster's pinned underlay CIDRs, none that names no host of its
 * own. So a cluster cannot point the probes and the answers at a resolver or another cluster's node.
 *
 * Fail closed: until the cluster-config is read every node record waits (neither used nor refused); a pin that
 * predates underlay CIDRs, or one Trust refuses (an id taken), leaves that cluster's nodes refused.
 */
import { Trust, type ClusterConfig, type NodeRecord, type PinnedCluster, type Verdict } from '../controlplane/records/index.js';

export class NodePins {
  private config: ClusterConfig | undefined;
  private readonly pins = new Map<string, PinnedCluster>();
  private trust: Trust | undefined;

  /** This etcd's cluster-config (undefined: deleted; the last one read stays: no reason to trust more). */
  setConfig(cfg: ClusterConfig | undefined): void {
    if (!cfg) return;
    this.config = cfg;
    this.rebuild();
  }

  /** What this cluster pinned about remote `name` (undefined: unpinned). */
  setPin(name: string, p: PinnedCluster | undefined): void {
    if (p) this.pins.set(name, p);
    else this.pins.delete(name);
    this.rebuild();
  }

  /** Why `rec` (of `cluster`) may not be used, undefined when it may, 'wait' while no cluster-config was read. */
  check(cluster: string, rec: NodeRecord): Verdict | 'wait' {
    return this.trust ? this.trust.node(cluster, rec) : 'wait';
  }

  /** A new Trust from the config and every pin (pins are few: at most maxConnectedClusters). */
  private rebuild(): void {
    const c = this.config;
    if (!c) return;
    const t = new Trust(c.name, c.id, c.podCIDRs, c.maxConnectedClusters ?? 255);
    t.setLocalUnderlay(c.underlayCIDRs);
    for (const p of this.pins.values()) t.pin(p); // a refused pin leaves its cluster unpinned: its nodes refused
    this.trust = t;
  }
}
