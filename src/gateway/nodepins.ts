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
import { Trust, WAIT, type Checked, type ClusterConfig, type ClusterFacts, type NodeRecord, type PinnedCluster } from '../controlplane/records/index.js';
import { formatPrefix, parseIP, prefixContains, type Prefix } from '../net/ip.js';

/**
 * Which node records a pin/config change can have turned: 'all' (the first config, or a change of the local
 * name, id or maxConnectedClusters), else the clusters whose facts changed (every record of theirs) and the
 * union of those clusters' old and new pod and underlay CIDRs (a record of another cluster with an address in
 * them: Trust.node refuses addresses inside any cluster's pod or underlay CIDRs).
 */
export type PinChanges = 'all' | { clusters: Set<string>; ranges: Prefix[] };

export class NodePins {
  private config: ClusterConfig | undefined;
  private readonly pins = new Map<string, PinnedCluster>();
  private trust: Trust | undefined;
  /** Set by setConfig/setPin: Trust is rebuilt once, on the next check or takeChanges (a burst costs one rebuild). */
  private dirty = false;
  /** What changed since the last takeChanges (undefined: nothing). */
  private pending: PinChanges | undefined;

  /** This etcd's cluster-config (undefined: deleted; the last one read stays: no reason to trust more). */
  setConfig(cfg: ClusterConfig | undefined): void {
    if (!cfg) return;
    this.config = cfg;
    this.dirty = true;
  }

  /** What this cluster pinned about remote `name` (undefined: unpinned). */
  setPin(name: string, p: PinnedCluster | undefined): void {
    if (p) this.pins.set(name, p);
    else this.pins.delete(name);
    this.dirty = true;
  }

  /** Why `rec` (of `cluster`) may not be used, undefined when it may, WAIT while no cluster-config was read (Trust's own verdict for it). */
  check(cluster: string, rec: NodeRecord): Checked {
    this.refresh();
    return this.trust ? this.trust.node(cluster, rec) : WAIT;
  }

  /** The changes since the last call (undefined: none), the Trust rebuilt first: the caller re-checks what they can have turned. */
  takeChanges(): PinChanges | undefined {
    this.refresh();
    const p = this.pending;
    this.pending = undefined;
    return p;
  }

  /** Whether record `rec` may have a different verdict after `changes`. */
  static touches(changes: PinChanges, rec: NodeRecord): boolean {
    if (changes === 'all' || changes.clusters.has(rec.cluster)) return true;
    return rec.addresses.some((a) => {
      const addr = parseIP(a);
      return addr !== null && changes.ranges.some((r) => prefixContains(r, addr));
    });
  }

  private refresh(): void {
    if (!this.dirty) return;
    this.dirty = false;
    const old = this.trust;
    this.rebuild();
    this.note(old, this.trust);
  }

  /** Adds what differs between Trust `a` and `b` to pending. */
  private note(a: Trust | undefined, b: Trust | undefined): void {
    if (this.pending === 'all' || a === b) return;
    if (!a || !b || a.localName !== b.localName || a.localId !== b.localId || a.maxClusters !== b.maxClusters) {
      this.pending = 'all';
      return;
    }
    const pending = this.pending ?? { clusters: new Set<string>(), ranges: [] };
    const all = (t: Trust) => [t.facts(t.localName)!, ...t.pinned()];
    const names = new Set([...all(a), ...all(b)].map((f) => f.name));
    for (const n of names) {
      const [fa, fb] = [a.facts(n), b.facts(n)];
      if (factsText(fa) === factsText(fb)) continue;
      pending.clusters.add(n);
      for (const f of [fa, fb]) if (f) pending.ranges.push(...f.podCIDRs, ...(Array.isArray(f.underlay) ? f.underlay : []));
    }
    this.pending = pending.clusters.size ? pending : undefined;
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

/** What Trust.node reads of a cluster's facts, as text (undefined: not pinned). */
function factsText(f: ClusterFacts | undefined): string | undefined {
  if (!f) return undefined;
  const u = Array.isArray(f.underlay) ? f.underlay.map(formatPrefix).join() : f.underlay;
  return `${f.id} ${f.podCIDRs.map(formatPrefix).join()} ${u}`;
}
