/**
 * What the agent lets into its data path from etcd, record by record
 * (docs/security.md). Records arrive decoded (records/ codecs); here each is
 * checked against what its origin may claim (records/trust.ts) and against
 * the records already admitted:
 *
 *   node      pod CIDRs overlapping no other admitted node's of its cluster; underlay
 *             addresses and WireGuard key no other admitted node's (any cluster); no
 *             pod CIDR holding another node's underlay address
 *   endpoint  its node admitted, and its address inside that node's pod CIDRs; at most
 *             maxEndpointsPerNode admitted per node, the others held back (endpointquota.ts)
 *   identity  cluster bits and labels as trust.ts says (cluster label normalised in)
 *   relay     trust.ts: hubs only, sanitised CIDRs and ids (re-checked when what is pinned changes)
 *
 * Conflicts between nodes: a node of our own cluster wins over a remote's
 * claim (the remote node is withdrawn); otherwise the first admitted is kept.
 * A refused node waits on the node it conflicts with and is checked again
 * when that one changes or goes.
 *
 * A refused *new value* leaves the key's admitted value in force, within one
 * incarnation of the key: a value of a new incarnation (`reborn`: the key was
 * deleted and created again, maybe unseen in a gap that forced a relist) that
 * is refused or waits withdraws it, as the delete would have, and stays the
 * candidate (admitted once its conflict or its node clears). When what is
 * pinned changes (recheck), an admitted value that no longer holds is
 * withdrawn: refusals never leave more trusted than the pin allows.
 *
 * Until this cluster's cluster-config is read, Trust answers WAIT where it
 * would need our own ranges (every node, local endpoints, relays): such a
 * record is held (not admitted, not refused, an admitted value withdrawn),
 * counted in `awaitingClusterConfig`, and checked again by the recheck the
 * config's arrival makes. One exception, first-hand: this agent's own node
 * record, when it claims exactly what node.yaml says (pod CIDRs, addresses,
 * the device's key), and its endpoints inside those pod CIDRs (selfAsConfigured).
 *
 * Cost: O(prefix length) per node (PrefixTrie), per endpoint its node's pod
 * CIDRs parsed again (≤ 16; not kept parsed per node, to save memory), O(1)
 * per identity, O(its CIDRs) per relay offer (re-checked on a recheck, not per
 * node admitted: admit); a record is reported once per (key, reason).
 */
import { RecordError, type RecordType, type RejectReason } from '../controlplane/records/codec.js';
import { cacheKey, stateKey } from '../controlplane/keys.js';
import type { EndpointRecord, EndpointRecords } from '../controlplane/endpointrecords.js';
import type { IdentityRecord } from '../controlplane/records/identity.js';
import type { NodeRecord } from '../controlplane/records/node.js';
import type { RelayRecord } from '../controlplane/records/relay.js';
import type { Rejections } from '../controlplane/records/rejections.js';
import { WAIT, type RelayVerdict, type Trust } from '../controlplane/records/trust.js';
import { formatPrefix, parseIP, parsePrefix, prefixContains, type Prefix } from '../net/ip.js';
import { PrefixTrie } from '../net/prefixtrie.js';
import { prefixesOverlap } from '../controlplane/types.js';
import { AdmissionSlots } from './admissionslots.js';
import { EndpointStore, type Candidate } from './endpointstore.js';
import { claimsOf, OwnNode, type SelfNode } from './selfnode.js';
import { DEFAULT_MAX_ENDPOINTS_PER_NODE, EndpointQuota } from './endpointquota.js';
import { shallowSame } from './packedendpoint.js';

export type { SelfNode } from './selfnode.js';

export interface AdmissionSinks {
  node(key: string, rec: NodeRecord | undefined): void;
  /**
   * `key` as upsert got it (from the sinks, its form: endpointKeys); `old`: the record admitted for it until now
   * (undefined: none). Admission's table (endpointRecords) holds `rec` already when this is called.
   */
  endpoint(key: string, rec: EndpointRecord | undefined, old: EndpointRecord | undefined): void;
  identity(key: string, rec: IdentityRecord | undefined): void;
  relay(key: string, rec: RelayRecord | undefined): void;
}


type Kind = 'node' | 'endpoint' | 'identity' | 'relay';
/** decide's outcome for a record Trust holds until our cluster-config is read (Trust's WAIT). */
const AWAIT_CONFIG = Symbol('awaiting cluster-config');
type CandidateTable = AdmissionSlots['candidates'];
type AdmittedTable = { get(key: string): unknown; set(key: string, v: unknown): void; delete(key: string): void; keys(): Iterable<string> };

export class Admission {
  /** Endpoints' candidates, admitted values and keys by node: one table (endpointstore.ts). */
  private readonly endpoints = new EndpointStore();
  /** The forms endpoint keys are held in, from their watch (sinks.ts) to the data path: read their text here. */
  readonly endpointKeys = this.endpoints.forms;
  /**
   * The admitted endpoint records by key (as `sinks.endpoint` gets it): the agent's one table of them
   * (EndpointStore.records). Its values are the endpoint codec's records: nothing else is admitted for an endpoint key.
   */
  readonly endpointRecords = this.endpoints.records as EndpointRecords;
  /** Nodes', identities' and relays' candidates and admitted values: a table each (admissionslots.ts). */
  private readonly slots = { node: new AdmissionSlots<NodeRecord>(), identity: new AdmissionSlots(), relay: new AdmissionSlots() };
  private readonly cand: { [K in Kind]: CandidateTable } = { node: this.slots.node.candidates, endpoint: this.endpoints.candidates, identity: this.slots.identity.candidates, relay: this.slots.relay.candidates };
  private readonly admitted: { [K in Kind]: AdmittedTable } = { node: this.slots.node.admitted, endpoint: this.endpoints.admitted, identity: this.slots.identity.admitted, relay: this.slots.relay.admitted };
  /**
   * The admitted node records by etcd key: the agent's one table of them (the peers' reconciler reads it:
   * ReconcilerDeps.nodes). It changes as admission decides, before `sinks.node` hears of the change.
   */
  readonly admittedNodes = this.slots.node.admitted;
  /** Pod CIDRs of admitted nodes per cluster; underlay addresses and WireGuard keys of all. */
  private readonly cidrs = new Map<string, PrefixTrie<string>>();
  private readonly addrs = new PrefixTrie<string>();
  private readonly keys = new Map<string, string>();
  /**
   * Nodes refused for a conflict, by the node they conflict with, and the one node each waits on: a node waits
   * on one node at a time and leaves that list when it is removed, admitted or waits on another, so together
   * they hold at most one entry per node candidate (a hostile remote's create-delete rounds leave nothing).
   */
  private readonly waiting = new Map<string, Set<string>>();
  private readonly waitsOn = new Map<string, string>();
  /** Candidates held because Trust needs our cluster-config (WAIT): at most one entry per candidate. */
  private readonly awaiting = new Set<string>();
  /** (key, reason) pairs already reported: a record is counted once, not on every re-check. */
  private readonly reported = new Map<string, string>();

  /** The bound on each node's admitted endpoints, and those held back at it. */
  readonly quota: EndpointQuota;
  /** This node's own claims (selfnode.ts). */
  private readonly self: OwnNode | undefined;

  /** Records (nodes, endpoints, relays) held until this cluster's cluster-config is read (status, metrics). */
  get awaitingClusterConfig(): number {
    return this.awaiting.size;
  }

  /**
   * `self`: this agent's own node. No other node, of any cluster, is admitted with a pod CIDR overlapping
   * its pod CIDRs, one of its underlay addresses or its WireGuard key, whatever the order records come in: first-admitted-wins would otherwise let a node listed
   * before ours (a restart, our lease lapsed) take our pods' addresses as its tunnel's sources here.
   * `maxEndpointsPerNode`: admitted endpoints per node (≥ 1; agent config `admission.maxEndpointsPerNode`).
   */
  constructor(private readonly trust: Trust, private readonly rejections: Rejections, private readonly sinks: AdmissionSinks, self?: SelfNode, maxEndpointsPerNode = DEFAULT_MAX_ENDPOINTS_PER_NODE) {
    this.quota = new EndpointQuota(maxEndpointsPerNode, (id) => this.endpoints.admittedOfNodeCount(id));
    if (self) this.self = new OwnNode(self);
  }

  // ---- inputs (from the decoding watch sinks) ----------------------------------

  /** `reborn`: `rec` is of a new incarnation of `key` (ListWatchSink.upsert): the admitted value is not kept for it. */
  upsert(kind: Kind, key: string, cluster: string, rec: unknown, reborn = false): void {
    this.cand[kind].set(key, cluster, rec);
    // a new record: its refusal is reported anew, and it waits anew at its node's bound, as after a delete
    if (reborn) {
      this.reported.delete(key);
      if (kind === 'endpoint' && this.quota.holding) this.quota.release(this.endpoints.nodeOf(key), key);
    }
    this.evaluate(kind, key, reborn);
  }

  remove(kind: Kind, key: string): void {
    this.cand[kind].delete(key);
    if (kind === 'endpoint' && this.quota.holding) this.quota.release(this.endpoints.nodeOf(key), key);
    if (kind === 'node') this.unwait(key);
    this.awaiting.delete(key);
    this.reported.delete(key);
    this.withdraw(kind, key);
  }

  /** What is pinned about `cluster` (or our own config) changed: check its records again. */
  recheck(cluster: string): void {
    for (const kind of ['node', 'identity', 'relay', 'endpoint'] as Kind[])
      for (const [key, c] of this.cand[kind]) if (c.cluster === cluster || kind === 'relay') this.evaluate(kind, key);
  }

  // ---- decisions ----------------------------------------------------------------

  /** `reborn`: the candidate is of another incarnation than the admitted value (upsert). */
  private evaluate(kind: Kind, key: string, reborn = false): void {
    const c = this.cand[kind].get(key);
    if (!c) return;
    const out = this.decide(kind, key, c);
    if (out === AWAIT_CONFIG) {
      this.awaiting.add(key);
      if (kind === 'endpoint' && this.quota.holding) this.quota.release(this.endpoints.nodeOf(key), key);
      return this.withdraw(kind, key);
    }
    this.awaiting.delete(key);
    // held back at its node's bound (reported when it starts to wait: no `reported` entry per key held back, which
    // made one cost more than an admitted one), or waits there no more
    if (kind === 'endpoint') {
      if (out instanceof RecordError && out.reason === 'budget') {
        if (this.quota.holdBack(this.endpoints.nodeOf(key), key)) this.rejections.add(out, c.cluster);
        this.reported.delete(key);
        return this.withdraw(kind, key); // an admitted endpoint is never refused for the bound (decide)
      }
      if (this.quota.holding) this.quota.release(this.endpoints.nodeOf(key), key);
    }
    if (out === 'wait') return this.withdraw(kind, key);
    if (out instanceof RecordError) {
      if (kind === 'node' && out.reason === 'conflict') {
        const clash = this.nodeClash(key, c.cluster, c.rec as NodeRecord);
        if (clash) this.waitOn(clash.owner, key);
      }
      this.report(key, c.cluster, out);
      // the key's admitted value stays in force only while it is of the candidate's incarnation (a deleted key's
      // value must not outlive its delete) and still holds itself ('wait': an endpoint whose node went away holds
      // no more than a refused one: kept, it outlived its node)
      const prev = this.admitted[kind].get(key);
      if (prev === undefined) return;
      if (reborn || prev === c.rec || (kind === 'endpoint' && shallowSame(prev, c.rec))) return this.withdraw(kind, key); // (a packed entry reads back as a new object each time)
      const held = this.decide(kind, key, { cluster: c.cluster, rec: prev });
      if (held instanceof RecordError || held === 'wait' || held === AWAIT_CONFIG) this.withdraw(kind, key);
      return;
    }
    const { record, dropped } = kind === 'relay' ? (out as RelayVerdict) : { record: out, dropped: undefined };
    this.report(key, c.cluster, dropped === undefined ? undefined : RecordError.quiet('relay', key, 'claim', dropped));
    this.admit(kind, key, c.cluster, record);
  }

  /** Counts refusal `e` of `key` once per (key, detail), not on every re-check (a relay honoured in part too). */
  private report(key: string, cluster: string, e: RecordError | undefined): void {
    if (e === undefined) return void this.reported.delete(key);
    if (this.reported.get(key) === e.detail) return;
    this.reported.set(key, e.detail);
    this.rejections.add(e, cluster);
  }

  private decide(kind: Kind, key: string, c: Candidate<unknown>): unknown {
    const refuse = (type: RecordType, reason: RejectReason, detail: string) => RecordError.quiet(type, kind === 'endpoint' ? this.endpointKeys.full(key) : key, reason, detail);
    switch (kind) {
      case 'node': {
        const rec = c.rec as NodeRecord;
        const why = this.trust.node(c.cluster, rec);
        if (why === WAIT && !this.self?.asConfigured(key, rec)) return AWAIT_CONFIG;
        if (why && why !== WAIT) return refuse('node', 'claim', why);
        const clash = this.nodeClash(key, c.cluster, rec);
        return clash ? refuse('node', 'conflict', clash.what) : rec;
      }
      case 'endpoint': {
        const rec = c.rec as EndpointRecord;
        const why = this.trust.endpoint(c.cluster, rec);
        if (why && why !== WAIT) return refuse('endpoint', 'claim', why);
        // the codec checked it already; the table files a record under its key's node, the services' index counts it under its own (endpointstore.ts)
        const id = this.endpoints.nodeOf(key);
        if (id !== `${c.cluster}/${rec.node}` || rec.cluster !== c.cluster) return refuse('endpoint', 'claim', `the record names node ${rec.cluster}/${rec.node}; its key names ${id}, from ${c.cluster}`);
        const nodeKey = this.nodeKeyOf(id);
        // before the config only our own node's (admitted as node.yaml says): inside its pod CIDRs, below
        if (why === WAIT && (nodeKey === undefined || nodeKey !== this.self?.key)) return AWAIT_CONFIG;
        const node = nodeKey === undefined ? undefined : this.slots.node.admitted.get(nodeKey);
        if (!node) return 'wait'; // its node is not (yet) admitted
        const addr = parseIP(rec.ip)!;
        // the node's claims are parsed here, not kept parsed per node (memory, issue 16): ≤ 16, stopping at the first that holds
        if (!node.podCIDRs.some((x) => prefixContains(parsePrefix(x), addr))) {
          return refuse('endpoint', 'claim', `address ${rec.ip} is outside node ${rec.node}'s pod CIDRs ${node.podCIDRs.map((x) => formatPrefix(parsePrefix(x))).join(', ')}`);
        }
        // last: only an endpoint that holds otherwise takes a place (one admitted keeps its place)
        if (!this.quota.fits(id) && this.admitted.endpoint.get(key) === undefined)
          return refuse('endpoint', 'budget', this.quota.refusal);
        return rec;
      }
      case 'identity': {
        const r = this.trust.identity(c.cluster, c.rec as IdentityRecord);
        return typeof r === 'string' ? refuse('identity', 'claim', r) : r;
      }
      case 'relay': {
        const r = this.trust.relay(c.cluster, c.rec as RelayRecord, (p) => this.addrs.within(p) !== undefined);
        if (r === WAIT) return AWAIT_CONFIG;
        return typeof r === 'string' ? refuse('relay', 'claim', r) : r; // evaluate reports what it dropped
      }
    }
  }

  /**
   * What node `key` would take from another admitted node, if anything: the
   * other node's key and what. A node of our own cluster may take a remote
   * node's claims (they are withdrawn when it is admitted): only a clash with
   * one of our own, or a remote one's clash with anyone, refuses.
   */
  private nodeClash(key: string, cluster: string, rec: NodeRecord): { owner: string; what: string } | undefined {
    const ours = cluster === this.trust.localName;
    const blocks = (owner: string) => !ours || this.admittedCluster(owner) === this.trust.localName;
    const cl = claimsOf(rec);
    const own = this.self?.clash(key, rec, cl);
    if (own) return { owner: this.self!.key, what: own };
    const trie = this.cidrs.get(cluster);
    for (const [i, p] of cl.cidrs.entries()) {
      const o = trie?.overlapping(p, key);
      if (o !== undefined && blocks(o)) return { owner: o, what: `pod CIDR ${rec.podCIDRs[i]} overlaps node ${this.nameOf(o)}'s` };
      const a = this.addrs.within(p, key);
      if (a !== undefined && blocks(a)) return { owner: a, what: `pod CIDR ${rec.podCIDRs[i]} holds the underlay address of node ${this.nameOf(a)}` };
    }
    for (const [i, p] of cl.addrs.entries()) {
      const o = this.addrs.covering(p, key);
      if (o !== undefined && blocks(o)) return { owner: o, what: `underlay address ${rec.addresses[i]} is node ${this.nameOf(o)}'s` };
    }
    const k = this.keys.get(rec.publicKey);
    if (k !== undefined && k !== key && blocks(k)) return { owner: k, what: `WireGuard key is node ${this.nameOf(k)}'s` };
    return undefined;
  }

  /**
   * The key of the admitted node `id` ("cluster/name") names: ours under the state prefix, else the cache's. A node
   * record lives under its own cluster and name (the node codec checks them against its key), so the key is found
   * from the id, without a table by name (issue 16: a Map entry per node); the record is checked to name it all
   * the same (fail closed on a record that reached admission another way).
   */
  private nodeKeyOf(id: string): string | undefined {
    const at = id.indexOf('/');
    const cluster = id.slice(0, at), name = id.slice(at + 1);
    for (const key of [stateKey('nodes', cluster, name), cacheKey('nodes', cluster, name)]) {
      const n = this.slots.node.admitted.get(key);
      if (n !== undefined && n.cluster === cluster && n.name === name) return key;
    }
    return undefined;
  }

  private admittedCluster(key: string): string | undefined {
    return (this.admitted.node.get(key) as NodeRecord | undefined)?.cluster;
  }

  private nameOf(key: string): string {
    const n = this.admitted.node.get(key) as NodeRecord | undefined;
    return n ? `${n.cluster}/${n.name}` : key;
  }

  private admit(kind: Kind, key: string, cluster: string, rec: unknown): void {
    if (kind !== 'node') {
      const old = kind === 'endpoint' ? (this.admitted.endpoint.get(key) as EndpointRecord | undefined) : undefined;
      this.admitted[kind].set(key, rec);
      if (kind === 'endpoint') return this.sinks.endpoint(key, rec as EndpointRecord, old);
      if (kind === 'identity') return this.sinks.identity(key, rec as IdentityRecord);
      return this.sinks.relay(key, rec as RelayRecord);
    }
    const n = rec as NodeRecord;
    const prev = this.admitted.node.get(key) as NodeRecord | undefined;
    // our own node takes what remote nodes claimed of it: they wait on it
    for (let clash = this.nodeClashAny(key, cluster, n); clash; clash = this.nodeClashAny(key, cluster, n)) {
      this.withdraw('node', clash);
      this.waitOn(key, clash);
    }
    if (prev) this.unindex(key, prev);
    this.unwait(key);
    this.admitted.node.set(key, n);
    this.index(key, cluster, n);
    this.sinks.node(key, n);
    if (!prev || prev.podCIDRs.join() !== n.podCIDRs.join()) this.recheckEndpointsOf(`${cluster}/${n.name}`);
    if (prev) this.release(key); // what it gave up may let others in
    // An admitted relay may now hold this node's address, only if the address lies outside its cluster's pinned
    // underlay CIDRs: Trust.node admits such an address only for our own node before the cluster-config is read
    // (relays all wait then), and Trust.relay drops every CIDR overlapping any cluster's underlay CIDRs. Every
    // offer re-checked on every node admitted cost O(offers x CIDRs) per node (a hub's offers: 1024 CIDRs each,
    // as many as kvstoremesh's record budget holds; ~120 ms per node at 100 of them).
    if (!Array.isArray(this.trust.facts(cluster)?.underlay)) for (const k of [...this.admitted.relay.keys()]) this.evaluate('relay', k);
  }

  /** Any admitted node (remote, since ours won) whose claims `key` overlaps. */
  private nodeClashAny(key: string, cluster: string, rec: NodeRecord): string | undefined {
    const cl = claimsOf(rec);
    for (const p of cl.cidrs) {
      const o = this.cidrs.get(cluster)?.overlapping(p, key) ?? this.addrs.within(p, key);
      if (o !== undefined) return o;
    }
    for (const p of cl.addrs) {
      const o = this.addrs.covering(p, key);
      if (o !== undefined) return o;
    }
    const k = this.keys.get(rec.publicKey);
    return k !== undefined && k !== key ? k : undefined;
  }

  private withdraw(kind: Kind, key: string): void {
    const prev = this.admitted[kind].get(key);
    if (prev === undefined) return;
    this.admitted[kind].delete(key);
    if (kind === 'endpoint') return this.endpointWithdrawn(key, prev as EndpointRecord);
    if (kind === 'identity') return this.sinks.identity(key, undefined);
    if (kind === 'relay') return this.sinks.relay(key, undefined);
    const n = prev as NodeRecord;
    this.unindex(key, n);
    this.sinks.node(key, undefined);
    this.recheckEndpointsOf(`${n.cluster}/${n.name}`);
    this.release(key);
  }

  private index(key: string, cluster: string, n: NodeRecord): void {
    const cl = claimsOf(n);
    let t = this.cidrs.get(cluster);
    if (!t) this.cidrs.set(cluster, (t = new PrefixTrie()));
    for (const p of cl.cidrs) t.insert(p, key);
    for (const a of cl.addrs) this.addrs.insert(a, key);
    this.keys.set(n.publicKey, key);
  }

  /** `n` is the record `index` was given for `key` (the one admitted until now). */
  private unindex(key: string, n: NodeRecord): void {
    const cl = claimsOf(n);
    for (const p of cl.cidrs) this.cidrs.get(n.cluster)?.remove(p, key);
    for (const a of cl.addrs) this.addrs.remove(a, key);
    if (this.keys.get(n.publicKey) === key) this.keys.delete(n.publicKey);
  }

  private waitOn(owner: string, key: string): void {
    if (this.waitsOn.get(key) !== owner) this.unwait(key);
    let s = this.waiting.get(owner);
    if (!s) this.waiting.set(owner, (s = new Set()));
    s.add(key);
    this.waitsOn.set(key, owner);
  }

  /** `key` waits on no node (any more). */
  private unwait(key: string): void {
    const owner = this.waitsOn.get(key);
    if (owner === undefined) return;
    this.waitsOn.delete(key);
    const s = this.waiting.get(owner);
    s?.delete(key);
    if (s?.size === 0) this.waiting.delete(owner);
  }

  /** Nodes that waited on `owner` are checked again (each waits on at most one node at a time). */
  private release(owner: string): void {
    const s = this.waiting.get(owner);
    if (!s) return;
    this.waiting.delete(owner);
    for (const k of s) this.waitsOn.delete(k);
    for (const k of s) {
      // most waiters still clash with someone else: finding whom costs a few trie steps, a full check much more
      const c = this.cand.node.get(k);
      const clash = c && this.admitted.node.get(k) !== c.rec ? this.nodeClash(k, c.cluster, c.rec as NodeRecord) : undefined;
      if (clash) this.waitOn(clash.owner, k);
      else this.evaluate('node', k);
    }
  }

  /** The room an endpoint leaves goes to its node's endpoints held back, the one that waited longest first. */
  private endpointWithdrawn(key: string, prev: EndpointRecord): void {
    const id = this.endpoints.nodeOf(key);
    this.sinks.endpoint(key, undefined, prev);
    for (let k = this.quota.next(id); k !== undefined; k = this.quota.next(id)) this.evaluate('endpoint', k);
  }

  private recheckEndpointsOf(nodeId: string): void {
    for (const k of this.endpoints.keysOfNode(nodeId)) this.evaluate('endpoint', k);
  }
}
