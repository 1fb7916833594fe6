/**
 * This agent's own node in admission (admission.ts): its claims as node.yaml says them, the one node the agent
 * knows first-hand. No other node may take them (`clash`), and the record under its own key is admitted before
 * the cluster-config is read only when it claims exactly them (`asConfigured`). Also how a node record's claims
 * are parsed (`claimsOf`), which both need.
 */
import type { NodeRecord } from '../controlplane/records/node.js';
import { prefixesOverlap } from '../controlplane/types.js';
import { parseIP, parsePrefix, type Prefix } from '../net/ip.js';

/**
 * This agent's own node as its configuration says (what its own record carries). Shapes as in the node record:
 * CIDR and address texts, the WireGuard key in base64 (undefined before the device has one).
 */
export interface SelfNode {
  /** Its node record's etcd key. */
  key: string;
  podCIDRs: string[];
  addresses: string[];
  publicKey(): string | undefined;
}

/** A node's claims, parsed: pod CIDRs, and underlay addresses as host prefixes. */
export interface NodeClaims {
  cidrs: Prefix[];
  addrs: Prefix[];
}

const hostPrefix = (ip: string): Prefix => {
  const a = parseIP(ip)!;
  return { addr: a, cidr: a.length * 8 };
};

/**
 * Parsed when asked, not kept: held per admitted node they cost ~450 B each (two
 * Buffers, their prefixes and arrays; ~45 B per remote endpoint at 10 per node,
 * issue 16, bench/memory.ts), and they are asked for once per node change and
 * once per endpoint admitted (its node's pod CIDRs). The codec checked the texts.
 */
export function claimsOf(n: NodeRecord): NodeClaims {
  return { cidrs: n.podCIDRs.map((x) => parsePrefix(x)), addrs: n.addresses.map(hostPrefix) };
}

/** The same prefixes, in any order. */
const samePrefixes = (a: Prefix[], b: Prefix[]): boolean => {
  const has = (xs: Prefix[], p: Prefix) => xs.some((q) => q.cidr === p.cidr && q.addr.equals(p.addr));
  return a.length === b.length && a.every((p) => has(b, p)) && b.every((p) => has(a, p));
};

/** This node's own claims, parsed once (≤ 16 of each). */
export class OwnNode {
  readonly key: string;
  private readonly claims: NodeClaims;

  constructor(private readonly self: SelfNode) {
    this.key = self.key;
    this.claims = { cidrs: self.podCIDRs.map((c) => parsePrefix(c)), addrs: self.addresses.map(hostPrefix) };
  }

  /** What node `key` (its claims parsed: cl) would take of this node's own claims, if anything. */
  clash(key: string, rec: NodeRecord, cl: NodeClaims): string | undefined {
    if (key === this.key) return undefined;
    const me = this.claims;
    // (an address inside a pod CIDR, ours too, is trust's refusal already)
    for (const [i, p] of cl.cidrs.entries())
      if (me.cidrs.some((m) => prefixesOverlap(m, p))) return `pod CIDR ${rec.podCIDRs[i]} overlaps this node's own`;
    for (const [i, a] of cl.addrs.entries())
      if (me.addrs.some((m) => m.addr.equals(a.addr))) return `underlay address ${rec.addresses[i]} is this node's own`;
    if (rec.publicKey === this.self.publicKey()) return `WireGuard key is this node's own`;
    return undefined;
  }

  /**
   * Whether `rec` is this node's own record (under its key) claiming exactly what its configuration says: the
   * same pod CIDRs and underlay addresses, in any order, and the device's key. First-hand, so admitted before the
   * cluster-config is read (the node comes up; its pods' endpoints can be admitted); any other value under our
   * key (another node of ours writing it) waits like any record.
   */
  asConfigured(key: string, rec: NodeRecord): boolean {
    if (key !== this.key || rec.publicKey !== this.self.publicKey()) return false;
    const cl = claimsOf(rec);
    return samePrefixes(cl.cidrs, this.claims.cidrs) && samePrefixes(cl.addrs, this.claims.addrs);
  }
}
