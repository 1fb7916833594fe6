/**
 * What the agent lets into its data path from etcd, record by record
 * (docs/security.md). Records arrive decoded (records/ codecs); here each is
 * checked against what its origin may claim (records/trust.ts) and against
 * the records already admitted:
 *
 *   node      no pod CIDR overlapping another admitted node's of its cluster (first comes, first kept)
 *   endpoint  its node admitted, and its address inside that node's pod CIDRs
 *   identity  cluster bits and labels as trust.ts says (cluster label normalised in)
 *   relay     trust.ts: hubs only, sanitised CIDRs and ids
 *
 * Every candidate is kept, so a record waiting for its node, or refused
 * while the owner of its CIDR was there, is admitted once it can be; and
 * when what is pinned about a cluster changes, that cluster's records are
 * checked again. A refused record is reported once per (key, reason) and the
 * key's previously admitted value stays in force.
 *
 * Bounded by what etcd holds (kvstoremesh budgets each remote); O(changed)
 * per record, except a CIDR-length mix within a cluster, which scans it.
 */
import { RecordError, type RecordType, type RejectReason } from '../controlplane/records/codec.js';
import type { EndpointRecord } from '../controlplane/records/endpoint.js';
import type { IdentityRecord } from '../controlplane/records/identity.js';
import type { NodeRecord } from '../controlplane/records/node.js';
import type { RelayRecord } from '../controlplane/records/relay.js';
import type { Rejections } from '../controlplane/records/rejections.js';
import type { Trust } from '../controlplane/records/trust.js';
import { formatPrefix, parseIP, parsePrefix, prefixContains, type Prefix } from '../net/ip.js';
import { prefixesOverlap } from '../controlplane/types.js';

export interface AdmissionSinks {
  node(key: string, rec: NodeRecord | undefined): void;
  endpoint(key: string, rec: EndpointRecord | undefined): void;
  identity(key: string, rec: IdentityRecord | undefined): void;
  relay(key: string, rec: RelayRecord | undefined): void;
}

interface Candidate<T> {
  cluster: string;
  rec: T;
}

type Kind = 'node' | 'endpoint' | 'identity' | 'relay';

export class Admission {
  private readonly cand: { [K in Kind]: Map<string, Candidate<unknown>> } = { node: new Map(), endpoint: new Map(), identity: new Map(), relay: new Map() };
  private readonly admitted: { [K in Kind]: Map<string, unknown> } = { node: new Map(), endpoint: new Map(), identity: new Map(), relay: new Map() };
  /** Admitted nodes by "cluster/name" -> key, and endpoint keys by "cluster/node". */
  private readonly nodeByName = new Map<string, string>();
  /** Underlay addresses of admitted nodes, any cluster: one address, one node (first kept). */
  private readonly addressOwner = new Map<string, string>();
  /** Admitted nodes per cluster: CIDR clashes are looked for within a cluster (clusters' own CIDRs are pinned apart). */
  private readonly nodesOfCluster = new Map<string, Map<string, NodeRecord>>();
  private readonly endpointsOfNode = new Map<string, Set<string>>();
  /** (key, reason) pairs already reported: a record is counted once, not on every re-check. */
  private readonly reported = new Map<string, string>();

  constructor(
    private readonly trust: Trust,
    private readonly rejections: Rejections,
    private readonly sinks: AdmissionSinks,
  ) {}

  admittedNodes(): IterableIterator<NodeRecord> {
    return this.admitted.node.values() as IterableIterator<NodeRecord>;
  }

  // ---- inputs (from the decoding watch sinks) ----------------------------------

  upsert(kind: Kind, key: string, cluster: string, rec: unknown): void {
    this.cand[kind].set(key, { cluster, rec });
    if (kind === 'endpoint') {
      const e = rec as EndpointRecord;
      const id = `${cluster}/${e.node}`;
      let s = this.endpointsOfNode.get(id);
      if (!s) this.endpointsOfNode.set(id, (s = new Set()));
      s.add(key);
    }
    this.evaluate(kind, key);
  }

  remove(kind: Kind, key: string): void {
    const c = this.cand[kind].get(key);
    this.cand[kind].delete(key);
    this.reported.delete(key);
    if (kind === 'endpoint' && c) this.endpointsOfNode.get(`${c.cluster}/${(c.rec as EndpointRecord).node}`)?.delete(key);
    this.withdraw(kind, key);
  }

  /** What is pinned about `cluster` (or our own config) changed: check its records again. */
  recheck(cluster: string): void {
    for (const kind of ['node', 'identity', 'relay', 'endpoint'] as Kind[])
      for (const [key, c] of this.cand[kind]) if (c.cluster === cluster || kind === 'relay') this.evaluate(kind, key);
  }

  // ---- decisions ----------------------------------------------------------------

  private evaluate(kind: Kind, key: string): void {
    const c = this.cand[kind].get(key);
    if (!c) return;
    const out = this.decide(kind, key, c);
    if (out === 'wait') return this.withdraw(kind, key);
    if (out instanceof RecordError) {
      // refused: the key's previously admitted value (if any) stays in force
      if (this.reported.get(key) !== out.detail) {
        this.reported.set(key, out.detail);
        this.rejections.add(out, c.cluster);
      }
      return;
    }
    this.reported.delete(key);
    this.admit(kind, key, c.cluster, out);
  }

  private decide(kind: Kind, key: string, c: Candidate<unknown>): unknown {
    const refuse = (type: RecordType, reason: RejectReason, detail: string) => new RecordError(type, key, reason, detail);
    switch (kind) {
      case 'node': {
        const rec = c.rec as NodeRecord;
        const why = this.trust.node(c.cluster, rec);
        if (why) return refuse('node', 'claim', why);
        const clash = this.cidrClash(key, c.cluster, rec.podCIDRs.map((x) => parsePrefix(x)));
        if (clash) return refuse('node', 'conflict', clash);
        for (const a of rec.addresses) {
          const owner = this.addressOwner.get(a);
          if (owner !== undefined && owner !== key) return refuse('node', 'conflict', `underlay address ${a} is node ${owner}'s`);
        }
        return rec;
      }
      case 'endpoint': {
        const rec = c.rec as EndpointRecord;
        const why = this.trust.endpoint(c.cluster, rec);
        if (why) return refuse('endpoint', 'claim', why);
        const nodeKey = this.nodeByName.get(`${c.cluster}/${rec.node}`);
        const node = nodeKey ? (this.admitted.node.get(nodeKey) as NodeRecord) : undefined;
        if (!node) return 'wait'; // its node is not (yet) admitted
        const addr = parseIP(rec.ip)!;
        if (!node.podCIDRs.some((x) => prefixContains(parsePrefix(x), addr))) return refuse('endpoint', 'claim', `address ${rec.ip} is outside node ${rec.node}'s pod CIDRs ${node.podCIDRs.join(', ')}`);
        return rec;
      }
      case 'identity': {
        const r = this.trust.identity(c.cluster, c.rec as IdentityRecord);
        return typeof r === 'string' ? refuse('identity', 'claim', r) : r;
      }
      case 'relay': {
        const addrs = [...this.admittedNodes()].flatMap((n) => n.addresses);
        const r = this.trust.relay(c.cluster, c.rec as RelayRecord, addrs);
        return typeof r === 'string' ? refuse('relay', 'claim', r) : r.record;
      }
    }
  }

  /** Why `prefixes` may not be node `key`'s: another admitted node of the cluster holds an overlapping one. */
  private cidrClash(key: string, cluster: string, prefixes: Prefix[]): string | undefined {
    for (const [k, other] of this.nodesOfCluster.get(cluster) ?? []) {
      if (k === key) continue;
      for (const o of other.podCIDRs) {
        const op = parsePrefix(o);
        for (const p of prefixes) if (prefixesOverlap(op, p)) return `pod CIDR ${formatPrefix(p)} overlaps ${o} of node ${other.name}`;
      }
    }
    return undefined;
  }

  private admit(kind: Kind, key: string, cluster: string, rec: unknown): void {
    const prev = this.admitted[kind].get(key);
    this.admitted[kind].set(key, rec);
    switch (kind) {
      case 'node': {
        const n = rec as NodeRecord;
        this.nodeByName.set(`${cluster}/${n.name}`, key);
        let m = this.nodesOfCluster.get(cluster);
        if (!m) this.nodesOfCluster.set(cluster, (m = new Map()));
        m.set(key, n);
        for (const a of (prev as NodeRecord | undefined)?.addresses ?? []) if (this.addressOwner.get(a) === key) this.addressOwner.delete(a);
        for (const a of n.addresses) this.addressOwner.set(a, key);
        this.sinks.node(key, n);
        // its endpoints' admission depends on its CIDRs
        const p = prev as NodeRecord | undefined;
        if (!p || p.podCIDRs.join() !== n.podCIDRs.join()) this.recheckEndpointsOf(`${cluster}/${n.name}`);
        return;
      }
      case 'endpoint':
        return this.sinks.endpoint(key, rec as EndpointRecord);
      case 'identity':
        return this.sinks.identity(key, rec as IdentityRecord);
      case 'relay':
        return this.sinks.relay(key, rec as RelayRecord);
    }
  }

  private withdraw(kind: Kind, key: string): void {
    const prev = this.admitted[kind].get(key);
    if (prev === undefined) return;
    this.admitted[kind].delete(key);
    switch (kind) {
      case 'node': {
        const n = prev as NodeRecord;
        const id = `${n.cluster}/${n.name}`;
        if (this.nodeByName.get(id) === key) this.nodeByName.delete(id);
        this.nodesOfCluster.get(n.cluster)?.delete(key);
        for (const a of n.addresses) if (this.addressOwner.get(a) === key) this.addressOwner.delete(a);
        this.sinks.node(key, undefined);
        this.recheckEndpointsOf(id);
        // a node refused for overlapping this one's CIDRs or addresses may be admitted now
        for (const [k, c] of this.cand.node) if (this.admitted.node.get(k) !== c.rec) this.evaluate('node', k);
        return;
      }
      case 'endpoint':
        return this.sinks.endpoint(key, undefined);
      case 'identity':
        return this.sinks.identity(key, undefined);
      case 'relay':
        return this.sinks.relay(key, undefined);
    }
  }

  private recheckEndpointsOf(nodeId: string): void {
    for (const k of this.endpointsOfNode.get(nodeId) ?? []) this.evaluate('endpoint', k);
  }
}
