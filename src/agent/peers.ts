/**
 * Peer reconciliation: node records (our cluster's, and synced remotes'
 * cached ones) become WireGuard peers whose allowed IPs are their pod CIDRs,
 * the CIDRs a hub relays for us, and (mesh mode) their node addresses; the
 * TUN's routes follow (RouteClaims, routetable.ts).
 *
 * The pure parts (which record is wanted, the relay plan, our relay offer)
 * are functions; PeerReconciler keeps the records and the peers and talks to
 * the device, the routes and the policy data path through narrow interfaces,
 * so it runs against fakes without root.
 */
import { cachePrefix, splitClusterName, stateKey, statePrefix } from '../controlplane/keys.js';
import { relayCodec, type NodeRecord, type RelayRecord } from '../controlplane/records/index.js';
import { internName } from '../controlplane/records/intern.js';
import type { Logger } from '../log.js';
import { holdList, readList } from '../lonelist.js';
import { formatIP, formatPrefix, parseIP, parsePrefix, prefixContains, type Prefix } from '../net/ip.js';
import { ROAM_MAX, sharedIfEqual } from '../wireguard/roaming.js';
import { AddressClaims } from './addressclaims.js';
import { NONE, PeerEntry, type PeerHandle, type PeerState } from './peerstate.js';
import type { RouteClaims } from './routetable.js';

export type { PeerHandle, PeerState } from './peerstate.js';

/** The device calls the reconciler makes (wireguard/device.ts WireGuardDevice). */
export interface PeerDevice {
  /** `keyText`: the key's base64 as the record holds it, kept by the peer instead of a copy (device.ts). */
  addPeer(publicKey: Buffer, keyText?: string): PeerHandle;
  removePeer(publicKey: Buffer): void;
  setPeerEndpoint(peer: PeerHandle, ep: { host: string; port: number }): void;
  /** The addresses the peer's endpoint may roam to: its node record's (wireguard/roaming.ts). */
  setPeerRoaming(peer: PeerHandle, hosts: readonly string[]): void;
  setPeerAllowedIPs(peer: PeerHandle, prefixes: Prefix[]): void;
}

/** The policy data path's view of peers (policy/datapath.ts PolicyDatapath), with policy on. */
export interface PeerPolicy {
  /**
   * Node addresses of `id` ("cluster/node"); null: the node is gone. `previous`: those it was last set to (null:
   * none): the reconciler keeps them (its node record's), so the data path keeps no copy per node.
   */
  setNode(id: string, addresses: readonly string[] | null, previous: readonly string[] | null): void;
  /** The clusters whose identities peer `peerId`'s tags may carry. */
  peerIdentity(peerId: number, clusterIds: number[]): void;
}

/**
 * A claimed address's key in addressClaims: a record address's own string when it is the canonical host address
 * (records/fields.ts: a record's always are), so a claim holds no string of its own; else its canonical text (a
 * host) or its prefix's text (not a host). IPv4 and IPv6 texts never coincide (dots vs colons).
 */
function claimKey(a: string, p: Prefix): string {
  if (p.cidr !== p.addr.length * 8) return formatPrefix(p);
  const c = formatIP(p.addr);
  return c === a ? a : c;
}
/** An IPv6 address's text (canonical, as a record's: records/fields.ts) has a colon, an IPv4 one none. */
const isV6 = (a: string): boolean => a.includes(':');

/** Node records by etcd key, as the reconciler reads them (a Map, or admission's table: Admission.admittedNodes). */
export interface NodeRecords {
  get(key: string): NodeRecord | undefined;
  keys(): Iterable<string>;
}

/** This node: who it is, its underlay addresses and pod CIDRs. */
export interface LocalNode {
  cluster: string;
  node: string;
  addresses: string[];
  podCIDRs: string[];
}

/**
 * The record behind node key `key` if it names a node we should have a tunnel
 * to (id "cluster/node", rec undefined when we should not); null when the key
 * names no node. A record must live under its own name; a cached one only
 * counts for a synced remote cluster; our own node is never a peer.
 */
export function desiredAt(me: LocalNode, key: string, nodes: Pick<NodeRecords, 'get'>, synced: ReadonlySet<string>): { id: string; rec: NodeRecord | undefined } | null {
  const own = me.cluster;
  const local = key.startsWith(statePrefix('nodes', own));
  const loc = splitClusterName(local ? statePrefix('nodes') : cachePrefix('nodes'), key);
  if (!loc) return null;
  const id = `${loc.cluster}/${loc.name}`;
  const rec = nodes.get(key);
  if (!rec) return { id, rec: undefined };
  if (loc.cluster !== rec.cluster || loc.name !== rec.name) return { id, rec: undefined };
  if (!local && (rec.cluster === own || !synced.has(rec.cluster))) return { id, rec: undefined };
  if (rec.cluster === own && rec.name === me.node) return { id, rec: undefined };
  return { id, rec };
}

/**
 * Hub-and-spoke: pod CIDRs we cannot reach directly but a hub node offers to
 * relay, by the hub node's id ("cluster/node"; CIDRs sorted). Every node picks
 * the same hub node for a remote cluster (the first relay offer by cluster,
 * then node name), so both directions of a relayed flow use the same hub node
 * and pass its cryptokey routing check. Offers count only from synced remote
 * clusters' nodes we have a tunnel to.
 */
export function relayPlan(me: LocalNode, desired: ReadonlyMap<string, NodeRecord>, relays: Iterable<RelayRecord>, synced: ReadonlySet<string>): Map<string, string[]> {
  const direct = new Set<string>(me.podCIDRs);
  for (const rec of desired.values()) for (const c of rec.podCIDRs) direct.add(c);
  const offers = [...relays]
    .filter((r) => r.cluster !== me.cluster && synced.has(r.cluster) && desired.has(`${r.cluster}/${r.node}`))
    .sort((a, b) => (a.cluster + '/' + a.node < b.cluster + '/' + b.node ? -1 : 1));
  const via = new Map<string, string>();
  for (const r of offers) for (const c of r.podCIDRs) if (!direct.has(c) && !via.has(c)) via.set(c, `${r.cluster}/${r.node}`);
  const plan = new Map<string, string[]>();
  for (const [cidr, hub] of via) plan.set(hub, [...(plan.get(hub) ?? []), cidr].sort());
  return plan;
}

/** A hub node's relay offer: every remote cluster's pod CIDRs it reaches, encoded; '' for none (or not a hub). */
export function relayOffer(me: LocalNode, hub: boolean, desired: ReadonlyMap<string, NodeRecord>): string {
  const remote = hub ? [...desired.values()].filter((r) => r.cluster !== me.cluster) : [];
  const cidrs = remote.flatMap((r) => r.podCIDRs).sort();
  const clusterIds = [...new Set(remote.map((r) => r.clusterId))].sort((a, b) => a - b);
  return cidrs.length ? relayCodec.encode({ cluster: me.cluster, node: me.node, podCIDRs: cidrs, clusterIds }) : '';
}

export interface ReconcilerDeps {
  me: LocalNode;
  dev: PeerDevice;
  routes: RouteClaims;
  /** With policy on: node addresses and peers' tags (and node addresses in allowed IPs). */
  policy?: PeerPolicy;
  /** Pod CIDRs of every pinned cluster and of our own cluster-config: a node address inside them is never a peer's. */
  podSpace(): Prefix[];
  /** Peers changed (services follow: backends on nodes that are peers). */
  peersChanged(): void;
  /** Our relay offer ('' for none), after every full pass (registration.ts publishes it when it changed). */
  publishRelay(value: string): void;
  /** The data path holds these peers now. */
  programmed(changed: NodeRecord[]): void;
  log: Logger;
  /**
   * The node records by etcd key, kept by their owner (the agent's: admission's admitted nodes,
   * Admission.admittedNodes), which calls setNodeRecord after each change to it: the reconciler then keeps no table
   * of its own (issue 16: one Map entry per node fewer). Without it the reconciler keeps what setNodeRecord is given.
   */
  nodes?: NodeRecords;
}

export class PeerReconciler {
  /** Node records by etcd key, local and cached: the owner's (ReconcilerDeps.nodes), else `own`. */
  private readonly nodes: NodeRecords;
  /** The table setNodeRecord writes when no owner keeps one. */
  private readonly own: Map<string, NodeRecord> | undefined;
  readonly syncedClusters = new Set<string>();
  /** Relay offers of hub nodes in connected clusters, by etcd key. */
  private readonly relays = new Map<string, RelayRecord>();
  /** Our own cluster is a hub (cluster-config relay: true). */
  private relayEnabled = false;
  /** By "cluster/node". */
  readonly peers = new Map<string, PeerEntry>();
  private queued = false;
  private stopped = false;
  /** Node keys changed since the last pass, or 'all' (sync state, relays or config changed). */
  private dirty: Set<string> | 'all' = 'all';
  private lastPlan = new Map<string, string[]>();
  /** Node addresses each peer holds (the first claimant): in its allowed IPs (policy on) and its roaming set. */
  private readonly addressClaims = new AddressClaims();

  constructor(private readonly d: ReconcilerDeps) {
    this.nodes = d.nodes ?? (this.own = new Map());
  }

  // ---- inputs (watch sinks, admission) ------------------------------------------------

  /**
   * A node record admitted (or gone: undefined) under etcd key `key`. With an owner's table (ReconcilerDeps.nodes),
   * the owner has made the change already and this only schedules the pass that reads it.
   */
  setNodeRecord(key: string, rec: NodeRecord | undefined): void {
    if (this.own && rec) this.own.set(key, rec);
    else if (this.own) this.own.delete(key);
    this.queue(key);
  }

  setRelay(key: string, rec: RelayRecord | undefined): void {
    if (rec) this.relays.set(key, rec);
    else this.relays.delete(key);
    this.queue();
  }

  /**
   * kvstoremesh marked a remote cluster synced (or it was disconnected: its cached records go too). Only a change
   * schedules a pass (over every node): kvstoremesh rewrites a marker as its mirror progresses (its watermark,
   * src/controlplane/watermark.ts), and a remote that creates keys would otherwise drive full passes here.
   */
  setSynced(cluster: string, synced: boolean): void {
    if (this.syncedClusters.has(cluster) === synced) return;
    if (synced) this.syncedClusters.add(cluster);
    else this.syncedClusters.delete(cluster);
    this.queue();
  }

  setRelayEnabled(on: boolean): void {
    this.relayEnabled = on;
    this.queue();
  }

  stop(): void {
    this.stopped = true;
  }

  /** Schedules a pass; `key` limits it to one node record, none means everything. */
  queue(key?: string): void {
    if (key === undefined) this.dirty = 'all';
    else if (this.dirty !== 'all') this.dirty.add(key);
    if (this.queued || this.stopped) return;
    this.queued = true;
    setImmediate(() => {
      this.queued = false;
      try {
        this.reconcile();
      } catch (err) {
        this.d.log.error({ err: (err as Error).message }, 'reconcile failed');
      }
    });
  }

  // ---- passes -----------------------------------------------------------------------------

  /** The nodes we should have a tunnel to: our cluster's and synced remotes', by "cluster/node". */
  desiredNodes(): Map<string, NodeRecord> {
    const out = new Map<string, NodeRecord>();
    for (const key of this.nodes.keys()) {
      const w = desiredAt(this.d.me, key, this.nodes, this.syncedClusters);
      if (w?.rec) out.set(w.id, w.rec);
    }
    return out;
  }

  reconcile(): void {
    const dirty = this.dirty;
    this.dirty = new Set();
    if (dirty !== 'all' && this.reconcileKeys(dirty)) return;
    const desired = this.desiredNodes();
    for (const [id, st] of this.peers) if (!desired.has(id)) this.removePeer(id, st);
    const plan = relayPlan(this.d.me, desired, this.relays.values(), this.syncedClusters);
    this.lastPlan = plan;
    const changed: NodeRecord[] = [];
    for (const [id, rec] of desired) {
      const relayed = plan.get(id) ?? NONE;
      const st = this.peers.get(id);
      if (this.unchanged(id, st, rec, st !== undefined && st.relayed.join() === relayed.join())) continue;
      this.upsertPeer(id, rec, relayed);
      changed.push(rec);
    }
    this.d.routes.flush();
    this.d.publishRelay(relayOffer(this.d.me, this.relayEnabled, desired));
    // The data path holds these peers now (the device calls above are synchronous; the
    // TUN's routes follow when the batch flush() started ends: RouteTable.flushed()).
    if (changed.length) this.d.programmed(changed);
  }

  /**
   * The common case under churn: a few node records changed. Handles them in
   * O(changed) and returns true, or returns false when a change can move relay
   * plans (a node came or went, or changed its pod CIDRs, while relays are in
   * use), which needs the full pass.
   */
  private reconcileKeys(keys: Set<string>): boolean {
    const relaysInUse = this.relays.size > 0 || this.relayEnabled;
    const work: Array<{ id: string; rec: NodeRecord | undefined }> = [];
    for (const key of keys) {
      const w = desiredAt(this.d.me, key, this.nodes, this.syncedClusters);
      if (!w) continue;
      const st = this.peers.get(w.id);
      if (relaysInUse && (!st || !w.rec || st.record.podCIDRs.join() !== w.rec.podCIDRs.join())) return false;
      work.push(w);
    }
    const changed: NodeRecord[] = [];
    for (const { id, rec } of work) {
      const st = this.peers.get(id);
      if (!rec) {
        // removed here; the same node may still be desired under its other key (state vs cache)
        if (st && !this.desiredById(id)) this.removePeer(id, st);
        continue;
      }
      if (this.unchanged(id, st, rec, true)) continue;
      this.upsertPeer(id, rec, this.lastPlan.get(id) ?? NONE);
      changed.push(rec);
    }
    this.d.routes.flush();
    if (changed.length) this.d.programmed(changed);
    return true;
  }

  /**
   * True when peer state `st` already stands for `rec` (records are replaced,
   * never mutated, on every change: the same object or the same content); a
   * peer whose key changed is removed here, before upsertPeer adds the new one.
   */
  private unchanged(id: string, st: PeerEntry | undefined, rec: NodeRecord, sameRelay: boolean): boolean {
    if (st && sameRelay && st.record === rec) return true;
    if (st && sameRelay && JSON.stringify(st.record) === JSON.stringify(rec)) {
      // same content: the routes read the new record's pod CIDRs (the old record is not kept alive)
      st.record = rec;
      // a set of two or more that was the old record's addresses array is the new one's (same content); a set of
      // one, held as its address (wireguard/peer.ts roamHosts), is only passed to the data path again
      this.programRoaming(id);
      return true;
    }
    if (st && st.record.publicKey !== rec.publicKey) this.removePeer(id, st);
    return false;
  }

  private desiredById(id: string): boolean {
    const [cluster, name] = id.split('/') as [string, string];
    const key = cluster === this.d.me.cluster ? stateKey('nodes', cluster, name) : `${cachePrefix('nodes', cluster)}${name}`;
    return desiredAt(this.d.me, key, this.nodes, this.syncedClusters)?.rec !== undefined;
  }

  private upsertPeer(id: string, rec: NodeRecord, relayed: readonly string[]): void {
    // V8's interned copy of the id (internName): desiredAt builds a new `cluster/node` string per call, so this map,
    // the address claims and the ipcache's owner held one the endpoint table (keyed by the interned copy) did not
    // share (s37: 24 B per node)
    id = internName(id);
    const { dev, policy } = this.d;
    const peer = dev.addPeer(Buffer.from(rec.publicKey, 'base64'), rec.publicKey);
    const old = this.peers.get(id);
    if (old) this.d.routes.release(old.routes);
    const st = new PeerEntry(rec, peer, relayed, rec.addresses[0]!);
    st.claims = old?.claims ?? NONE;
    this.d.routes.claim(st.routes);
    this.peers.set(id, st);
    // (next to the map's change: the data path's node addresses are what `peers` holds, whatever throws later)
    policy?.setNode(id, rec.addresses, old?.record.addresses ?? null);
    this.claimNodeAddresses(id, st, rec.addresses);
    // the endpoint: an address the node holds (not another node's), of our family if it has one; a changed record
    // sets it and the roaming set again, so an endpoint on an address the record dropped moves to one it names
    const held = rec.addresses.filter((a) => this.holds(id, a));
    const ofFam = (a: string) => isV6(a) === isV6(this.d.me.addresses[0]!);
    st.endpointHost = held.find(ofFam) ?? held[0] ?? rec.addresses.find(ofFam) ?? rec.addresses[0]!;
    this.programRoaming(id);
    dev.setPeerEndpoint(peer, { host: st.endpointHost, port: rec.port });
    this.programAllowedIPs(id);
    policy?.peerIdentity(peer.id, [rec.clusterId, ...this.relayedClusterIds(id, relayed)]);
    this.d.peersChanged();
    this.d.log.debug({ peer: id, endpoint: `${st.endpointHost}:${rec.port}`, podCIDRs: rec.podCIDRs }, 'peer up');
  }

  private removePeer(id: string, st: PeerEntry): void {
    this.d.routes.release(st.routes);
    this.d.dev.removePeer(st.peer.publicKey);
    this.peers.delete(id);
    this.d.policy?.setNode(id, null, st.record.addresses);
    this.d.peersChanged();
    // the handover last: programming the nodes that take its addresses may throw, and the peer is gone by then from
    // the device, the routes and this map alike (else a record coming back read as unchanged, never re-added)
    this.claimNodeAddresses(id, st, []);
    this.d.log.debug({ peer: id }, 'peer removed');
  }

  /**
   * Cluster ids a hub node relays for (from its relay offer: a spoke does not
   * know the other spokes' nodes): its tags may carry those clusters' identities.
   */
  private relayedClusterIds(hubId: string, cidrs: readonly string[]): number[] {
    if (cidrs.length === 0) return [];
    const [cluster, node] = hubId.split('/');
    for (const r of this.relays.values()) if (r.cluster === cluster && r.node === node) return r.clusterIds ?? [];
    return [];
  }

  /**
   * A peer's allowed IPs: its pod CIDRs, the CIDRs it relays and (mesh mode)
   * the node addresses it holds, so a pod's packets to another node's address
   * go through that node's tunnel (encrypted, tagged, its reply comes back the
   * same way) instead of leaving in the clear.
   */
  private programAllowedIPs(id: string): void {
    const st = this.peers.get(id);
    if (!st) return;
    const addrs = this.d.policy ? readList(st.claims).filter((a) => this.addressClaims.holder(a) === id) : NONE;
    this.d.dev.setPeerAllowedIPs(st.peer, [...st.routes, ...addrs].map((c) => parsePrefix(c)));
  }

  /**
   * A peer's roaming set (wireguard/roaming.ts): its endpoint's address first (so the endpoint it was set to can
   * always be followed to a new port), then the other record addresses it holds, our family first, ≤ ROAM_MAX. An
   * address another node holds is never in it: a node spoofing its source must not point our traffic for it at a
   * sibling. The record's held array when that is the set (two or more addresses: shared, not copied per peer,
   * issue 16); a set of one address the peer holds as that address (wireguard/peer.ts roamHosts), so the new array
   * a one-address record gives per read (records/node.ts HeldNode) is not kept.
   */
  private programRoaming(id: string): void {
    const st = this.peers.get(id);
    if (!st) return;
    const v6 = isV6(this.d.me.addresses[0]!);
    const rest = st.record.addresses.filter((a) => a !== st.endpointHost && this.holds(id, a));
    const set = [st.endpointHost, ...rest.filter((a) => isV6(a) === v6), ...rest.filter((a) => isV6(a) !== v6)].slice(0, ROAM_MAX);
    this.d.dev.setPeerRoaming(st.peer, sharedIfEqual(set, st.record.addresses));
  }

  /**
   * Whether peer `id` holds record address `a` (it claimed it first, and it is neither ours nor pod space). A record's
   * addresses are canonical (records/fields.ts ipAddress), so the address is its own claim key (claimKey).
   */
  private holds(id: string, a: string): boolean {
    return this.addressClaims.holder(a) === id;
  }

  /**
   * Records which node addresses peer `id` claims now. An address goes to the
   * first peer that claims it (a node must not take over another's address, nor
   * a pod address: one inside any pinned cluster's pod CIDRs or any peer's
   * routes is never taken); when the holder lets go, the next claimant gets it
   * (its allowed IPs and roaming set are programmed again).
   */
  private claimNodeAddresses(id: string, st: PeerEntry, addresses: string[]): void {
    const mine = new Set(this.d.me.addresses.map((a) => formatPrefix(parsePrefix(a))));
    // Pod space: every pinned cluster's and our pod CIDRs (a few per cluster) and every peer's routes (a trie: one per node).
    const podSpace = [...this.d.podSpace(), ...this.d.me.podCIDRs.map((c) => parsePrefix(c))];
    const want = new Set<string>();
    for (const a of addresses) {
      const p = parsePrefix(a);
      if (!mine.has(formatPrefix(p)) && !this.d.routes.covers(p.addr) && !podSpace.some((c) => c.addr.length === p.addr.length && prefixContains(c, p.addr))) want.add(claimKey(a, p));
    }
    const handOver = this.addressClaims.update(id, readList(st.claims), want, this.d.log);
    st.claims = want.size ? holdList([...want]) : NONE;
    for (const other of handOver) {
      this.programAllowedIPs(other);
      this.programRoaming(other);
    }
  }
}
