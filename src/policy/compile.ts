/**
 * Compiles rules into per-endpoint policy maps, the entries the native data
 * path looks up (native/src/policy/policymap.h): (remote identity or 0 = any,
 * protocol or 0 = any, port range) -> allow or deny, with the rule's number.
 *
 * `evaluate` is the same lookup in TypeScript (deny first, then a redirect to
 * the L7 proxy, then the first allow of the identity's entries, then of the
 * wildcard entries, else default deny), so `wiremesh policy trace` explains
 * exactly what the data path does.
 */
import { CLUSTER_LABEL, LOCAL_SCOPE, RESERVED, type Labels } from '../identity/identity.js';
import type { Prefix } from '../net/ip.js';
import { prefixesOverlap } from '../controlplane/types.js';
import { matches } from './selector.js';
import type { Direction, PeerSpec, Rule } from './rules.js';

export interface PolicyEntry {
  identity: number;
  proto: number;
  deny: boolean;
  /** An L7 rule covers it: the flow goes to the proxy, which decides per request. */
  redirect?: boolean;
  lo: number;
  hi: number;
  rule: number;
}

/** Every identity policies can name: cluster-scoped (from etcd), reserved, and CIDR identities. */
export class IdentityUniverse {
  readonly identities = new Map<number, Labels>();
  /** Node-local CIDR identities by prefix text. */
  readonly cidrs = new Map<string, { id: number; prefix: Prefix }>();
  private nextCidr = 1;

  constructor(readonly localCluster: string) {
    for (const [name, id] of Object.entries(RESERVED)) this.identities.set(id, { [`reserved:${name}`]: '' });
  }

  /** The CIDR identity of a prefix (allocated on first use). */
  cidrIdentity(text: string, prefix: Prefix): number {
    let c = this.cidrs.get(text);
    if (!c) {
      c = { id: LOCAL_SCOPE + this.nextCidr++, prefix };
      this.cidrs.set(text, c);
    }
    return c.id;
  }
}

const prefixWithin = (inner: Prefix, outer: Prefix): boolean => inner.addr.length === outer.addr.length && inner.cidr >= outer.cidr && prefixesOverlap(inner, outer);

/** The identities a peer names (0 = any). */
export function peerIdentities(p: PeerSpec, u: IdentityUniverse): number[] {
  switch (p.kind) {
    case 'all':
      return [0];
    case 'entity':
      return entityIdentities(p.entity, u);
    case 'cidr': {
      const out: number[] = [];
      for (const { id, prefix } of u.cidrs.values())
        if (prefixWithin(prefix, p.cidr) && !p.except.some((e) => prefixWithin(prefix, e.prefix))) out.push(id);
      if (p.cidr.cidr === 0) out.push(RESERVED.world); // 0.0.0.0/0 and ::/0 include everything outside the mesh
      return out;
    }
    case 'selector': {
      const out: number[] = [];
      const wantsReserved = p.selector.labels.some(([k]) => k.startsWith('reserved:')) || p.selector.expressions.some((e) => e.key.startsWith('reserved:'));
      for (const [id, labels] of u.identities) {
        if ((id < 256 || id >= LOCAL_SCOPE) && !wantsReserved) continue;
        if (matches(p.selector, labels)) out.push(id);
      }
      return out;
    }
  }
}

function entityIdentities(entity: string, u: IdentityUniverse): number[] {
  switch (entity) {
    case 'world':
      return [RESERVED.world, ...[...u.cidrs.values()].map((c) => c.id)];
    case 'cluster': {
      // the local cluster: its endpoints, its nodes and the reserved node-side identities
      const out: number[] = [RESERVED.host, RESERVED['remote-node'], RESERVED.health, RESERVED.init, RESERVED.unmanaged];
      for (const [id, labels] of u.identities) if (id >= 256 && id < LOCAL_SCOPE && labels[CLUSTER_LABEL] === u.localCluster) out.push(id);
      return out;
    }
    default: {
      const id = (RESERVED as Record<string, number>)[entity];
      return id === undefined ? [] : [id];
    }
  }
}

export interface EndpointPolicy {
  ingress: PolicyEntry[] | null;
  egress: PolicyEntry[] | null;
  /** Rules that select the endpoint, by direction (for traces). */
  selectedBy: Record<Direction, Rule[]>;
}

/**
 * The maps of one endpoint. ruleNumber gives each rule its stable number
 * (the data path reports it in flow records).
 */
export function compileEndpoint(labels: Labels, rules: Rule[], u: IdentityUniverse, ruleNumber: (r: Rule) => number): EndpointPolicy {
  const res: EndpointPolicy = { ingress: null, egress: null, selectedBy: { ingress: [], egress: [] } };
  const enforced = { ingress: false, egress: false };
  const entries = { ingress: [] as PolicyEntry[], egress: [] as PolicyEntry[] };
  for (const r of rules) {
    if (!matches(r.subject, labels)) continue;
    res.selectedBy[r.direction].push(r);
    if (r.defaultDeny) enforced[r.direction] = true;
    const n = ruleNumber(r);
    const ids = new Set<number>();
    for (const p of r.peers) for (const id of peerIdentities(p, u)) ids.add(id);
    const ports = r.ports.length ? r.ports : [{ proto: 0, lo: 0, hi: 65535 }];
    for (const id of ids) for (const p of ports) entries[r.direction].push({ identity: id, proto: p.proto, deny: r.deny, ...(p.http ? { redirect: true } : {}), lo: p.lo, hi: p.hi, rule: n });
  }
  // A direction only some enableDefaultDeny:false policies select stays open,
  // but their deny rules still apply: an allow-everything entry after them.
  for (const dir of ['ingress', 'egress'] as const) {
    if (res.selectedBy[dir].length === 0) continue;
    if (!enforced[dir]) entries[dir].push({ identity: 0, proto: 0, deny: false, lo: 0, hi: 65535, rule: 0 });
    res[dir] = entries[dir];
  }
  return res;
}

/** Rows for Device.setEndpointPolicy (16 bytes each, docs/wire-format.md). */
export function encodeEntries(entries: PolicyEntry[] | null): Buffer | null {
  if (!entries) return null;
  const b = Buffer.alloc(entries.length * 16);
  entries.forEach((e, i) => {
    const o = i * 16;
    b.writeUInt32LE(e.identity >>> 0, o);
    b[o + 4] = e.proto;
    b[o + 5] = e.deny ? 1 : e.redirect ? 2 : 0; // action: allow, deny, redirect to the L7 proxy
    b.writeUInt16LE(e.lo, o + 6);
    b.writeUInt16LE(e.hi, o + 8);
    b.writeUInt32LE(e.rule >>> 0, o + 12);
  });
  return b;
}

export type Verdict = { verdict: 'allow' | 'deny' | 'default-deny' | 'not-enforced' | 'proxy'; entry?: PolicyEntry };

/** The native lookup, in TypeScript. */
export function evaluate(entries: PolicyEntry[] | null, identity: number, proto: number, port: number, hasPorts: boolean): Verdict {
  if (!entries) return { verdict: 'not-enforced' };
  const hit = (e: PolicyEntry) => (e.proto === 0 || e.proto === proto) && ((e.lo === 0 && e.hi === 65535) || (hasPorts && port >= e.lo && port <= e.hi));
  const groups = [entries.filter((e) => e.identity === identity), identity !== 0 ? entries.filter((e) => e.identity === 0) : []];
  let allow: PolicyEntry | undefined;
  let redirect: PolicyEntry | undefined;
  for (const g of groups) {
    const deny = g.find((e) => e.deny && hit(e));
    if (deny) return { verdict: 'deny', entry: deny };
    // within a group the first redirect, else the first allow (the native sort order); redirect wins across groups
    const r = g.find((e) => !e.deny && e.redirect && hit(e));
    if (r) redirect ??= r;
    else allow ??= g.find((e) => !e.deny && hit(e));
  }
  if (redirect) return { verdict: 'proxy', entry: redirect };
  return allow ? { verdict: 'allow', entry: allow } : { verdict: 'default-deny' };
}
