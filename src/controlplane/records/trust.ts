/**
 * Claims checked against their origin (docs/security.md). A record's origin is
 * the cluster its key names; what that cluster may claim comes from what this
 * side pinned (its own cluster-config, and per remote the record `clustermesh
 * connect` stored), never from the cluster's own records:
 *
 *   pin       id within the mesh's maxConnectedClusters; the remote's layout is ours (fail closed)
 *   node      clusterId = the pinned id; pod CIDRs inside the pinned CIDRs and inside no other cluster's
 *             (where pins overlap: nobody's); addresses inside the pinned underlay CIDRs and inside no
 *             other cluster's (fail closed for a pin without them)
 *   endpoint  address inside the pinned CIDRs and no other cluster's; identity with the pinned id's bits
 *   identity  cluster bits = the pinned id; labels naming a cluster name it (normalised in)
 *   relay     only from a cluster pinned as hub; only CIDRs inside its pinned relay CIDRs (none for a
 *             pin without them), naming no notAHost range, no cluster owns (pod CIDRs, and the
 *             underlay CIDRs of ours and every pin), that hold no known node address, no wider
 *             than /8 (/16 for IPv6)
 *   policy    a remote's mesh-wide policy is enforced only with the opt-in (acceptPolicies)
 *
 * Until this cluster's own ranges are known (its cluster-config read: pod and underlay CIDRs) a node or relay
 * check, and a local endpoint's, that finds no reason to refuse returns WAIT, not undefined: every node check
 * reads our ranges (an address inside them is no other cluster's), and so does a relay's. Refusals stand
 * (more ranges only refuse more). Readers hold a waiting record (neither used nor refused) and check it again
 * once the config is read (agent: Admission; gateway-dns: NodePins).
 *
 * Stateful checks (a pod CIDR claimed by two nodes, an endpoint outside its
 * node's CIDRs, a gateway address that is not its node's) live with the state
 * they need: src/agent/admission.ts, src/gateway/gslb.ts.
 */
import { CLUSTER_LABEL, DEFAULT_MAX_CLUSTERS, identityCluster, type MaxClusters } from '../../identity/identity.js';
import { formatPrefix, notAHost, notAHostIn, parseIP, parsePrefix, prefixContains, prefixCovers, type Prefix } from '../../net/ip.js';
import { prefixesOverlap } from '../types.js';
import { contestedPodCIDRs } from './contested.js';
import type { PinnedCluster } from './cluster.js';
import type { EndpointRecord } from './endpoint.js';
import type { IdentityRecord } from './identity.js';
import type { NodeRecord } from './node.js';
import type { RelayRecord } from './relay.js';
import { translationIn } from './underlay.js';

export interface ClusterFacts {
  name: string;
  id: number;
  /** Empty while unknown (the local cluster before its cluster-config is read): CIDR checks wait for it. */
  podCIDRs: Prefix[];
  /**
   * Where the cluster's node addresses may lie (its pinned underlay CIDRs). 'unpinned': pinned, or configured,
   * before the field existed: every node address of the cluster is refused until it is pinned with them.
   * 'unknown': the local cluster before its cluster-config is read (as podCIDRs: the check WAITs for it).
   */
  underlay: Prefix[] | 'unpinned' | 'unknown';
  relay: boolean;
  /** What a hub may relay here (its pin's relayCIDRs); empty: nothing (no hub, or a pin that predates them). */
  relayCIDRs: Prefix[];
  acceptPolicies: boolean;
}

/** A reason, or undefined when the claim holds. */
export type Verdict = string | undefined;

/** The verdict of a check that needs this cluster's own ranges before its cluster-config was read: hold, re-check. */
export const WAIT = 'wait';
/** A verdict, or WAIT. */
export type Checked = Verdict | typeof WAIT;

/** A relay offer as honoured (Trust.relay), and what of it was dropped as the hub may not offer it. */
export interface RelayVerdict {
  record: RelayRecord;
  dropped?: string;
}

/**
 * Why the underlay address text `a` (the codec checked it) cannot be a node's own, or undefined: it names no
 * host of its own (`notAHost`). Node addresses enter their peer's allowed IPs (mesh mode): one every node has
 * itself would send our pods' packets to it into that tunnel; gateway-dns would probe it on its own host and
 * hand it to clients. A stateless check, also applied where no pin is known (gateway-dns).
 */
export function notANodeAddress(a: string): Verdict {
  const local = notAHost(parseIP(a)!);
  return local ? `underlay address ${a} is ${local}: no node's own` : undefined;
}

const minRelayed = (p: Prefix) => (p.addr.length === 4 ? 8 : 16);

/** Why hub `f` may not relay `p` at all, or undefined (the other drops are Trust.relay's). */
function relayRefusal(f: ClusterFacts, p: Prefix): Verdict {
  if (p.cidr < minRelayed(p)) return 'is wider than /8 (/16 for IPv6)';
  const local = notAHostIn(p);
  if (local) return `overlaps ${local}`;
  const t = translationIn(p);
  if (t) return t;
  // the pin's ranges are parsed once per pin (Trust.pin); a check allocates nothing: offers × pin ranges per re-check
  if (!f.relayCIDRs.some((r) => prefixCovers(r, p)))
    return f.relayCIDRs.length ? `is outside ${f.name}'s pinned relay CIDRs` : `is not relayable: ${f.name}'s pin names no relay CIDRs (connect again)`;
  return undefined;
}

const underlayOf = (cidrs: string[] | undefined): ClusterFacts['underlay'] => (cidrs ? cidrs.map((c) => parsePrefix(c)) : 'unpinned');

export class Trust {
  private readonly clusters = new Map<string, ClusterFacts>();
  private readonly byId = new Map<number, string>();
  /**
   * Per remote, the parts of its pinned pod CIDRs another cluster's (ours or a pin's) overlap: pre-flight keeps pins
   * apart, but two `connect`s run at once (each reads the pins before the other writes) or a pin written by hand do
   * not. There the range is nobody's remote's (ours stays ours: first-hand), whatever the order records arrive in.
   */
  private contested = new Map<string, Prefix[]>();

  /**
   * maxClusters: the mesh's cluster-id layout as this cluster is configured
   * (its cluster-config's maxConnectedClusters): how identities' cluster bits
   * are read, and the highest cluster id any pin or record may carry.
   */
  constructor(readonly localName: string, readonly localId: number, localCIDRs: string[] = [], readonly maxClusters: MaxClusters = DEFAULT_MAX_CLUSTERS) {
    this.set({ name: localName, id: localId, podCIDRs: localCIDRs.map((c) => parsePrefix(c)), underlay: 'unknown', relay: false, relayCIDRs: [], acceptPolicies: true });
  }

  /** The local cluster's underlay CIDRs as its cluster-config names them (undefined: a config that predates them). */
  setLocalUnderlay(cidrs: string[] | undefined): void {
    this.set({ ...this.clusters.get(this.localName)!, underlay: underlayOf(cidrs) });
  }

  /** The local cluster's pod CIDRs (its cluster-config). */
  setLocalCIDRs(cidrs: string[]): void {
    this.set({ ...this.clusters.get(this.localName)!, podCIDRs: cidrs.map((c) => parsePrefix(c)) });
  }

  /**
   * Pins a remote. A pin whose id another pinned cluster (or we) already
   * has is refused (returns why): two clusters with one id could speak for
   * each other. `clustermesh connect` refuses such a pair first.
   */
  pin(p: PinnedCluster): string | undefined {
    if (p.name === this.localName) return `a cluster cannot pin itself`;
    if (p.id > this.maxClusters) return `id ${p.id} is above this mesh's maxConnectedClusters (${this.maxClusters})`;
    const theirs = p.maxConnectedClusters ?? DEFAULT_MAX_CLUSTERS;
    if (theirs !== this.maxClusters)
      return `${p.name} was connected with maxConnectedClusters ${theirs}, this cluster has ${this.maxClusters}: identities would name other clusters`;
    const holder = this.byId.get(p.id);
    if (holder !== undefined && holder !== p.name) return `id ${p.id} is already ${holder}'s`;
    const relayCIDRs = (p.relayCIDRs ?? []).map((c) => parsePrefix(c));
    this.set({ name: p.name, id: p.id, podCIDRs: p.podCIDRs.map((c) => parsePrefix(c)), underlay: underlayOf(p.underlayCIDRs), relay: p.relay, relayCIDRs, acceptPolicies: p.acceptPolicies });
    return undefined;
  }

  /** Whether `p` is pinned as it stands (its facts unchanged): a pin seen again needs no re-check. */
  holds(p: PinnedCluster): boolean {
    const f = this.clusters.get(p.name);
    const text = (ps: Prefix[] | string) => (typeof ps === 'string' ? ps : ps.map(formatPrefix).join());
    const given = (cs: string[] | undefined) => (cs ? text(cs.map((c) => parsePrefix(c))) : 'unpinned');
    const same = f !== undefined && f.id === p.id && f.relay === p.relay && f.acceptPolicies === p.acceptPolicies && text(f.podCIDRs) === given(p.podCIDRs);
    return same && text(f.underlay) === given(p.underlayCIDRs) && text(f.relayCIDRs) === text((p.relayCIDRs ?? []).map((c) => parsePrefix(c)));
  }

  unpin(name: string): void {
    if (name === this.localName || !this.clusters.delete(name)) return;
    this.reindex();
  }

  private set(f: ClusterFacts): void {
    this.clusters.set(f.name, f);
    this.reindex();
  }

  /** Ids by cluster and the contested pod CIDRs, derived (at most maxClusters clusters): never out of step with `clusters`. */
  private reindex(): void {
    this.byId.clear();
    for (const f of this.clusters.values()) if (!this.byId.has(f.id) || f.name === this.localName) this.byId.set(f.id, f.name);
    this.contested = contestedPodCIDRs(this.clusters.values(), this.localName);
  }

  /** The parts of `cluster`'s pod CIDRs another cluster's overlap, as text ('' for none): what refusals there read. */
  contestedOf(cluster: string): string {
    return (this.contested.get(cluster) ?? []).map(formatPrefix).join();
  }

  facts(cluster: string): ClusterFacts | undefined {
    return this.clusters.get(cluster);
  }

  pinned(): ClusterFacts[] {
    return [...this.clusters.values()].filter((f) => f.name !== this.localName);
  }

  /** Name of the cluster with this id, as pinned. */
  clusterOfId(id: number): string | undefined {
    return this.byId.get(id);
  }

  /**
   * Whether this cluster's own ranges are known: its cluster-config read. Its pod CIDRs say it (a cluster-config
   * always names one or more); every reader sets them and the underlay CIDRs from one config in one turn. Until
   * then the checks that read them WAIT.
   */
  get localKnown(): boolean {
    return this.clusters.get(this.localName)!.podCIDRs.length > 0;
  }

  /** A remote's mesh-wide policies apply here only with the opt-in; our own always do. */
  enforcesPoliciesOf(cluster: string): boolean {
    return cluster === this.localName || this.clusters.get(cluster)?.acceptPolicies === true;
  }

  private origin(cluster: string): ClusterFacts | string {
    return this.clusters.get(cluster) ?? `cluster "${cluster}" is not pinned here (not connected)`;
  }

  /** Refusals first; WAIT where nothing refuses and our own ranges are unknown (every node check reads them). */
  node(cluster: string, rec: NodeRecord): Checked {
    const why = this.nodeClaims(cluster, rec);
    return why === undefined && !this.localKnown ? WAIT : why;
  }

  private nodeClaims(cluster: string, rec: NodeRecord): Verdict {
    const f = this.origin(cluster);
    if (typeof f === 'string') return f;
    if (rec.clusterId > this.maxClusters) return `claims cluster id ${rec.clusterId}, above this mesh's maxConnectedClusters (${this.maxClusters})`;
    if (rec.clusterId !== f.id) return `claims cluster id ${rec.clusterId}; ${cluster} is pinned as ${f.id}`;
    // an underlay address inside any cluster's pod CIDRs would turn pod traffic into tunnel endpoints
    for (const a of rec.addresses) {
      const addr = parseIP(a)!;
      const local = notANodeAddress(a);
      if (local) return local;
      for (const c of this.clusters.values()) if (c.podCIDRs.some((p) => prefixContains(p, addr))) return `underlay address ${a} lies in ${c.name}'s pod CIDRs`;
      const owner = this.underlayOwner(f, a, addr);
      if (owner) return owner;
    }
    const pods = rec.podCIDRs.map((c) => parsePrefix(c));
    const shared = this.contested.get(cluster)?.find((s) => pods.some((p) => prefixesOverlap(s, p)));
    return this.insideCluster(f, pods, 'pod CIDR') ?? (shared && `a pod CIDR overlaps ${formatPrefix(shared)}, which another cluster's pin holds too: nobody's`);
  }

  /** WAIT for a local endpoint that nothing refuses while our pod CIDRs are unknown (a remote's reads only its pin). */
  endpoint(cluster: string, rec: EndpointRecord): Checked {
    const f = this.origin(cluster);
    if (typeof f === 'string') return f;
    const of = (id: number) => identityCluster(id, this.maxClusters);
    if (rec.identity !== undefined && of(rec.identity) !== f.id) return `identity ${rec.identity} belongs to cluster id ${of(rec.identity)}, not ${cluster} (${f.id})`;
    const addr = parseIP(rec.ip)!;
    if (f.podCIDRs.length && !f.podCIDRs.some((p) => prefixContains(p, addr))) return `address ${rec.ip} is outside ${cluster}'s pod CIDRs`;
    const shared = this.contested.get(cluster)?.find((p) => prefixContains(p, addr));
    if (shared) return `address ${rec.ip} lies in ${formatPrefix(shared)}, which another cluster's pin holds too: nobody's`;
    return cluster === this.localName && !this.localKnown ? WAIT : undefined;
  }

  /** Checks an identity and returns it with the cluster label set from the pinned name (or a reason). */
  identity(cluster: string, rec: IdentityRecord): IdentityRecord | string {
    const f = this.origin(cluster);
    if (typeof f === 'string') return f;
    const c = identityCluster(rec.id, this.maxClusters);
    if (c !== f.id) return `identity ${rec.id} has cluster id ${c}; ${cluster} is pinned as ${f.id}`;
    const claimed = rec.labels[CLUSTER_LABEL];
    if (claimed !== undefined && claimed !== cluster) return `labels claim cluster "${claimed}", the identity is ${cluster}'s`;
    return claimed === undefined ? { id: rec.id, labels: { ...rec.labels, [CLUSTER_LABEL]: cluster } } : rec;
  }

  /**
   * A relay offer as far as it may be honoured: a reason when the cluster is no hub; otherwise only the CIDRs
   * and ids it may relay. An offer also names clusters we reach directly (their pod CIDRs): those are dropped,
   * not refused, and so are CIDRs holding a known node address. A CIDR overlapping any cluster's underlay CIDRs
   * is dropped too: routed into the TUN it would take our own hosts (an etcd with no node record in that slice)
   * or another cluster's away from the underlay. What the hub may not offer at all is dropped and named in
   * `dropped` (the caller reports it, once per record and text): a CIDR wider than /8 (/16 for IPv6), overlapping
   * a range that names no host of its own (notAHost: the node's metadata service, resolver, loopback, link-local,
   * multicast) or a translation prefix (NAT64, 6to4, Teredo), or outside the hub's pinned relayCIDRs (every CIDR,
   * for a pin that predates the field). WAIT while our own ranges are unknown: the offer could not be cut out of them.
   */
  relay(cluster: string, rec: RelayRecord, holdsNodeAddress: (p: Prefix) => boolean = () => false): RelayVerdict | string {
    const f = this.origin(cluster);
    if (typeof f === 'string') return f;
    if (!f.relay) return `${cluster} is not pinned as a hub: its relay offers are not honoured`;
    if (!this.localKnown) return WAIT;
    const known = [...this.clusters.values()].flatMap((c) => [...c.podCIDRs, ...(Array.isArray(c.underlay) ? c.underlay : [])]);
    const bad: string[] = [];
    const podCIDRs = rec.podCIDRs.filter((c) => {
      const p = parsePrefix(c);
      // a cluster's own ranges (reached directly, or an underlay) are dropped quietly: an honest hub offers them
      if (p.cidr >= minRelayed(p) && known.some((k) => prefixesOverlap(k, p))) return false;
      const why = relayRefusal(f, p);
      if (why) return void bad.push(`${c} ${why}`);
      return !holdsNodeAddress(p);
    });
    const dropped = bad.length ? `relayed CIDRs dropped: ${bad.slice(0, 8).join('; ')}${bad.length > 8 ? ` and ${bad.length - 8} more` : ''}` : undefined;
    const clusterIds = (rec.clusterIds ?? []).filter((id) => !this.byId.has(id) && id <= this.maxClusters);
    return { record: { ...rec, podCIDRs, clusterIds }, ...(dropped ? { dropped } : {}) };
  }

  /**
   * Why address `a` (parsed: addr) cannot be a node's of cluster f: outside f's pinned underlay CIDRs, or inside
   * another cluster's (pre-flight keeps them apart; where pins overlap anyway the overlap is nobody's, whatever
   * the order records arrive in).
   */
  private underlayOwner(f: ClusterFacts, a: string, addr: Buffer): Verdict {
    if (f.underlay === 'unpinned')
      return f.name === this.localName
        ? `${f.name}'s cluster-config names no underlayCIDRs: node addresses are refused until \`clustermesh enable --underlay-cidrs\` records them`
        : `${f.name} was pinned without underlay CIDRs (connected before they existed): its node addresses are refused until it is connected again`;
    if (f.underlay !== 'unknown' && !f.underlay.some((p) => prefixContains(p, addr)))
      return `underlay address ${a} is outside ${f.name}'s pinned underlay CIDRs ${f.underlay.map(formatPrefix).join(', ')}`;
    for (const c of this.clusters.values())
      if (c !== f && Array.isArray(c.underlay) && c.underlay.some((p) => prefixContains(p, addr))) return `underlay address ${a} lies in ${c.name}'s underlay CIDRs`;
    return undefined;
  }

  private insideCluster(f: ClusterFacts, prefixes: Prefix[], what: string): Verdict {
    if (f.podCIDRs.length === 0) return undefined;
    for (const p of prefixes)
      if (!f.podCIDRs.some((c) => c.addr.length === p.addr.length && c.cidr <= p.cidr && prefixContains(c, p.addr)))
        return `${what} ${formatPrefix(p)} is outside ${f.name}'s pinned pod CIDRs`;
    return undefined;
  }
}
