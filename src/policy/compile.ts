/**
 * Compiles rules into per-endpoint policy maps, the entries the native data
 * path looks up (native/src/policy/policymap.h): (remote identity or 0 = any,
 * protocol or 0 = any, port range) -> allow or deny, with the rule's number.
 *
 * `evaluate` is the same lookup in TypeScript (deny first, then a redirect to
 * the L7 proxy, then the first allow of the identity's entries, then of the
 * wildcard entries, else default deny), so `wiremesh policy trace` explains
 * exactly what the data path does.
 *
 * Two parts of a rule resolve against the mesh's endpoints (their addresses
 * and container ports, IdentityUniverse.setEndpoint), both per identity since
 * the data path decides by identity:
 * - a named port (ports.ts): ingress against the selected endpoint's own
 *   ports, egress against each destination identity's endpoints;
 * - a NetworkPolicy ipBlock: an endpoint identity matches when every address
 *   of every endpoint holding it lies in one of the rule's ipBlocks (cidr
 *   minus except) — exact for one pod per label set, never wider than the
 *   addresses the rule names (docs/policy.md).
 * What resolves to nothing matches nothing, and the rule still puts what it
 * selects in default deny (a deny rule's unresolved named port denies every
 * port of its protocol instead: fail closed both ways).
 */
import { CLUSTER_LABEL, LOCAL_SCOPE, NAMESPACE_LABEL, NAMESPACE_LABELS_PREFIX, NAMESPACE_NAME_LABEL, RESERVED, type Labels } from '../identity/identity.js';
import { maskPrefix, parseIP, prefixContains, type Prefix } from '../net/ip.js';
import { prefixesOverlap } from '../controlplane/types.js';
import { PolicyAction, policyRows } from '../native/rows.js';
import { matches } from './selector.js';
import { resolveNamedPort, resolveNamedPortAll, type ContainerPort } from './ports.js';
import { protocolName, type Direction, type HttpRule, type PeerSpec, type Rule } from './rules.js';

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

/** One mesh endpoint address: its identity and its pod's container ports. */
export interface EndpointFacts {
  identity: number;
  ip: string;
  ports: readonly ContainerPort[];
}

/** What the universe reads of an endpoint record (EndpointFacts, or a record that may lack them). */
export interface EndpointSource {
  identity?: number;
  ip: string;
  ports?: readonly ContainerPort[];
}

/** Every identity policies can name: cluster-scoped (from etcd), reserved, and CIDR identities. */
export class IdentityUniverse {
  readonly identities = new Map<number, Labels>();
  /** Node-local CIDR identities by prefix text. */
  readonly cidrs = new Map<string, { id: number; prefix: Prefix }>();
  /** Namespaces known apart from endpoints (v1 Namespace objects of the local cluster): no "unknown namespace" warning. */
  readonly namespaces = new Set<string>();
  private nextCidr = 1;
  private readonly facts: ReadonlyMap<string, EndpointSource>;
  /** Whether `facts` is the universe's own table (setEndpoint) or its caller's (endpointChanged). */
  private readonly ownsFacts: boolean;
  private byIdentity: Map<number, EndpointFacts[]> | undefined;
  /** Inside withRuleMemo: each rule's identities, computed once for all endpoints of one compile. */
  ruleIdsMemo: Map<Rule, Set<number>> | undefined;

  /**
   * Runs `fn` (one compile of every local endpoint) with ruleIdentities
   * computed once per rule instead of once per rule and endpoint: selector
   * matching over every identity is most of a compile. The universe must not
   * change inside `fn`; outside it nothing is cached.
   */
  withRuleMemo<T>(fn: () => T): T {
    this.ruleIdsMemo = new Map();
    try {
      return fn();
    } finally {
      this.ruleIdsMemo = undefined;
    }
  }

  /**
   * `facts`: endpoint addresses by the caller's key, read in its order (a record without an identity
   * counts as none, one without ports as no ports). The data path passes its own endpoint records
   * (no second table of an entry per endpoint, bench/memory.ts) and says what changed
   * (endpointChanged); without it the universe keeps its own table (setEndpoint).
   */
  constructor(
    readonly localCluster: string,
    source?: ReadonlyMap<string, EndpointSource>,
  ) {
    this.facts = source ?? new Map<string, EndpointSource>();
    this.ownsFacts = source === undefined;
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

  /** Records (or with null forgets) an endpoint address in the universe's own table; true when that changed anything. */
  setEndpoint(key: string, f: EndpointFacts | null): boolean {
    if (!this.ownsFacts) throw new Error('setEndpoint: this universe reads its endpoints from its caller (endpointChanged)');
    const own = this.facts as Map<string, EndpointSource>;
    if (!this.endpointChanged(own.get(key), f ?? undefined)) return false;
    if (f) own.set(key, f);
    else own.delete(key);
    return true;
  }

  /**
   * The caller's table changed an endpoint from `old` to `cur` (undefined: none): true when its facts differ, and
   * then the cached members by identity are dropped (a side effect: call it once per change). The universe reads
   * the caller's records as they are: a record is replaced, never mutated in place (the decoder builds each anew),
   * or this test would miss the change while the next compile saw it.
   */
  endpointChanged(old: EndpointSource | undefined, cur: EndpointSource | undefined): boolean {
    const a = old?.identity === undefined ? undefined : old;
    const b = cur?.identity === undefined ? undefined : cur;
    if (a === undefined && b === undefined) return false;
    if (a && b && a.identity === b.identity && a.ip === b.ip && JSON.stringify(a.ports ?? []) === JSON.stringify(b.ports ?? [])) return false;
    this.byIdentity = undefined;
    return true;
  }

  /**
   * Endpoint addresses by identity (each identity with at least one). Each a facts object of its own, never the
   * caller's record: admission's table builds a record anew on each read (agent/packedendpoint.ts), and the whole
   * record kept here would be a copy (~112 B) where the facts are 48 B and the address.
   */
  endpointsByIdentity(): Map<number, EndpointFacts[]> {
    if (!this.byIdentity) {
      this.byIdentity = new Map();
      for (const r of this.facts.values()) {
        if (r.identity === undefined) continue;
        const f: EndpointFacts = { identity: r.identity, ip: r.ip, ports: r.ports ?? NO_PORTS };
        const l = this.byIdentity.get(f.identity);
        if (l) l.push(f);
        else this.byIdentity.set(f.identity, [f]);
      }
    }
    return this.byIdentity;
  }
}

/** The ports of an endpoint that declares none: one shared empty list. */
const NO_PORTS: readonly ContainerPort[] = Object.freeze([]);

const prefixWithin = (inner: Prefix, outer: Prefix): boolean => inner.addr.length === outer.addr.length && inner.cidr >= outer.cidr && prefixesOverlap(inner, outer);

/**
 * The identities the universe holds, or (only given) just `only` if it holds
 * it: a delta for one identity asks the same questions as a full compile
 * without the walk over every identity.
 */
function identitiesOf(u: IdentityUniverse, only?: number): Iterable<[number, Labels]> {
  if (only === undefined) return u.identities;
  const labels = u.identities.get(only);
  return labels ? [[only, labels]] : [];
}

/** Keeps 0 (any) and, given, only `only`. */
const kept = (only: number | undefined) => (id: number) => only === undefined || id === only || id === 0;

/** The identities a peer names (0 = any); given `only`, just those of {only, 0} it names. */
export function peerIdentities(p: PeerSpec, u: IdentityUniverse, only?: number): number[] {
  switch (p.kind) {
    case 'all':
      return [0];
    case 'entity':
      return entityIdentities(p.entity, u, only).filter(kept(only));
    case 'cidr': {
      const out: number[] = [];
      for (const { id, prefix } of u.cidrs.values())
        if (prefixWithin(prefix, p.cidr) && !p.except.some((e) => prefixWithin(prefix, e.prefix))) out.push(id);
      // A /0 is a CIDR identity of its own family like any other prefix (rulePrefixes), not `world`:
      // world is what misses the ipcache in either family, so 0.0.0.0/0 as world admitted all of IPv6 too.
      return out.filter(kept(only));
    }
    case 'selector': {
      const out: number[] = [];
      const wantsReserved = p.selector.labels.some(([k]) => k.startsWith('reserved:')) || p.selector.expressions.some((e) => e.key.startsWith('reserved:'));
      for (const [id, labels] of identitiesOf(u, only)) {
        if ((id < 256 || id >= LOCAL_SCOPE) && !wantsReserved) continue;
        if (matches(p.selector, labels)) out.push(id);
      }
      return out;
    }
  }
}

function entityIdentities(entity: string, u: IdentityUniverse, only?: number): number[] {
  switch (entity) {
    case 'world':
      return [RESERVED.world, ...[...u.cidrs.values()].map((c) => c.id)];
    case 'cluster': {
      // the local cluster: its endpoints, its nodes and the reserved node-side identities
      const out: number[] = [RESERVED.host, RESERVED['remote-node'], RESERVED.health, RESERVED.init, RESERVED.unmanaged];
      for (const [id, labels] of identitiesOf(u, only)) if (id >= 256 && id < LOCAL_SCOPE && labels[CLUSTER_LABEL] === u.localCluster) out.push(id);
      return out;
    }
    default: {
      const id = (RESERVED as Record<string, number>)[entity];
      return id === undefined ? [] : [id];
    }
  }
}

const within = (p: Prefix, a: Buffer): boolean => prefixContains({ addr: maskPrefix(p.addr, p.cidr), cidr: p.cidr }, a);

/**
 * Every identity a rule's peers name (0 = any): peerIdentities of each peer,
 * plus, for NetworkPolicy ipBlocks, each endpoint identity all of whose
 * addresses some ipBlock of the rule admits (cidr, not an except). Given
 * `only`: the subset of {only, 0}, at the cost of that identity alone.
 */
export function ruleIdentities(r: Rule, u: IdentityUniverse, only?: number): ReadonlySet<number> {
  const memo = only === undefined ? u.ruleIdsMemo?.get(r) : undefined;
  if (memo) return memo;
  const ids = new Set<number>();
  for (const p of r.peers) for (const id of peerIdentities(p, u, only)) ids.add(id);
  const blocks = r.peers.filter((p): p is Extract<PeerSpec, { kind: 'cidr' }> => p.kind === 'cidr' && p.endpoints === true);
  const byIdentity = u.endpointsByIdentity();
  const onlyEps = only === undefined ? undefined : byIdentity.get(only);
  if (blocks.length)
    for (const [id, eps] of only === undefined ? byIdentity : onlyEps ? new Map([[only, onlyEps]]) : [])
      if (
        eps.every((e) => {
          const a = parseIP(e.ip);
          return a !== null && blocks.some((b) => within(b.cidr, a) && !b.except.some((x) => within(x.prefix, a)));
        })
      )
        ids.add(id);
  if (only === undefined) u.ruleIdsMemo?.set(r, ids);
  return ids;
}

/** One entry of a rule before numbering: an identity and a concrete port range. */
export interface RuleEntry {
  identity: number;
  proto: number;
  lo: number;
  hi: number;
  http?: HttpRule[];
}

/**
 * A rule's entries for the endpoint whose container ports are `ownPorts`:
 * every peer identity times every port, named ports resolved (ingress: own
 * ports; egress: the destination identity's, wildcard peers expanded to every
 * endpoint identity that declares the name). Unresolved named ports give no
 * entry, or in a deny rule an entry for every port of the protocol.
 */
export function ruleEntries(r: Rule, u: IdentityUniverse, ownPorts: readonly ContainerPort[], only?: number): RuleEntry[] {
  const ids = ruleIdentities(r, u, only);
  const out: RuleEntry[] = [];
  const ports = r.ports.length ? r.ports : [{ proto: 0, lo: 0, hi: 65535 }];
  for (const p of ports) {
    const http = 'http' in p && p.http ? { http: p.http } : {};
    if (!('name' in p) || p.name === undefined) {
      for (const id of ids) out.push({ identity: id, proto: p.proto, lo: p.lo, hi: p.hi, ...http });
      continue;
    }
    const name = p.name;
    const push = (id: number, resolved: Array<{ proto: number; port: number }>) => {
      for (const x of resolved) out.push({ identity: id, proto: x.proto, lo: x.port, hi: x.port, ...http });
      if (resolved.length === 0 && r.deny) out.push({ identity: id, proto: p.proto, lo: 0, hi: 65535 });
    };
    if (r.direction === 'ingress') {
      const resolved = resolveNamedPort(ownPorts, name, p.proto);
      for (const id of ids) push(id, resolved);
      continue;
    }
    const eps = u.endpointsByIdentity();
    const targets = ids.has(0) && !r.deny ? new Set([...ids, ...(only === undefined ? eps.keys() : eps.has(only) ? [only] : [])].filter((id) => id !== 0)) : ids;
    for (const id of targets) push(id, id === 0 ? [] : resolveNamedPortAll((eps.get(id) ?? []).map((e) => e.ports), name, p.proto));
  }
  return out;
}

/**
 * What the rules say that cannot be resolved now, one line per rule and
 * cause: a named port no endpoint declares, an unknown entity, a selector on
 * a namespace that has neither endpoints nor a Namespace object.
 */
export function ruleWarnings(rules: Rule[], u: IdentityUniverse): string[] {
  const out: string[] = [];
  const declared = new Set<string>();
  for (const eps of u.endpointsByIdentity().values()) for (const e of eps) for (const p of e.ports) declared.add(`${p.name}/${p.protocol}`);
  const known = new Set(u.namespaces);
  for (const labels of u.identities.values()) if (labels[NAMESPACE_LABEL]) known.add(labels[NAMESPACE_LABEL]);
  for (const r of rules) {
    for (const p of r.ports) {
      if (p.name === undefined) continue;
      const protos = p.proto === 0 ? ['TCP', 'UDP', 'SCTP'] : [protocolName(p.proto)];
      if (protos.some((x) => declared.has(`${p.name}/${x}`))) continue;
      out.push(`${r.id}: named port ${p.name}${p.proto ? `/${protocolName(p.proto)}` : ''} is declared by no pod: ${r.deny ? 'the rule denies every port of its protocol to its peers' : 'it matches nothing (the policy still isolates the pods it selects)'}`);
    }
    for (const peer of r.peers) {
      if (peer.kind === 'entity' && entityIdentities(peer.entity, u).length === 0) out.push(`${r.id}: unknown entity ${peer.entity}: it matches nothing`);
      if (peer.kind !== 'selector') continue;
      for (const [k, v] of peer.selector.labels)
        if ((k === NAMESPACE_LABEL || k === `${NAMESPACE_LABELS_PREFIX}${NAMESPACE_NAME_LABEL}`) && !known.has(v))
          out.push(`${r.id}: namespace ${v} is unknown (no endpoints, no Namespace object): the selector matches nothing in it yet`);
    }
  }
  return [...new Set(out)];
}

export interface EndpointPolicy {
  ingress: PolicyEntry[] | null;
  egress: PolicyEntry[] | null;
  /** Rules that select the endpoint, by direction (for traces). */
  selectedBy: Record<Direction, Rule[]>;
}

/**
 * The maps of one endpoint (its identity labels and container ports).
 * ruleNumber gives each rule its stable number (the data path reports it in
 * flow records).
 */
export function compileEndpoint(labels: Labels, rules: Rule[], u: IdentityUniverse, ruleNumber: (r: Rule) => number, ownPorts: readonly ContainerPort[] = []): EndpointPolicy {
  const res: EndpointPolicy = { ingress: null, egress: null, selectedBy: { ingress: [], egress: [] } };
  const enforced = { ingress: false, egress: false };
  const entries = { ingress: [] as PolicyEntry[], egress: [] as PolicyEntry[] };
  for (const r of rules) {
    if (!matches(r.subject, labels)) continue;
    res.selectedBy[r.direction].push(r);
    if (r.defaultDeny) enforced[r.direction] = true;
    entries[r.direction].push(...policyEntries(r, ruleEntries(r, u, ownPorts), ruleNumber(r)));
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

function policyEntries(r: Rule, es: RuleEntry[], n: number): PolicyEntry[] {
  return es.map((e) => ({ identity: e.identity, proto: e.proto, deny: r.deny, ...(e.http ? { redirect: true } : {}), lo: e.lo, hi: e.hi, rule: n }));
}

/**
 * The entries of identity `id` (never 0) in one direction's map of an
 * endpoint, given the rules that select it there (EndpointPolicy.selectedBy,
 * in rule order) and its container ports: exactly the entries of `id` that
 * compileEndpoint would give, in its order (the identity's group of the map).
 */
export function identityEntries(selectedBy: readonly Rule[], u: IdentityUniverse, ruleNumber: (r: Rule) => number, ownPorts: readonly ContainerPort[], id: number): PolicyEntry[] {
  const out: PolicyEntry[] = [];
  for (const r of selectedBy)
    out.push(
      ...policyEntries(
        r,
        ruleEntries(r, u, ownPorts, id).filter((e) => e.identity === id),
        ruleNumber(r),
      ),
    );
  return out;
}

/** Rows for Device.setEndpointPolicy (rows.ts policyRows), null = not enforced. */
export function encodeEntries(entries: PolicyEntry[] | null): Buffer | null {
  if (!entries) return null;
  return policyRows(entries.map((e) => ({ ...e, action: e.deny ? PolicyAction.Deny : e.redirect ? PolicyAction.Redirect : PolicyAction.Allow })));
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
