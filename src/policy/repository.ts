/**
 * The rules a cluster enforces, from the policies an etcd holds: the
 * cluster's own and every connected cluster's mesh-wide ones. One function
 * serves the agent (what the data path enforces) and `policy trace` (what it
 * explains), so they cannot disagree.
 */
import type { Manifest } from '../manifests/validate.js';
import { formatPrefix, maskPrefix, type Prefix } from '../net/ip.js';
import { isMeshWide, policyRules, type Rule } from './rules.js';

export interface StoredPolicy {
  /** Cluster whose etcd state holds it. */
  cluster: string;
  /** Name under the policies prefix: `<ns>/cnp.<name>`. */
  name: string;
  manifest: Manifest;
}

/**
 * enforces(cluster): whether this cluster opted in to that remote's mesh-wide
 * policies at connect (records/trust.ts); without it a remote's policies are
 * shown by trace but never enforced here. Default: every remote's (unit tests).
 */
export function enforcedRules(policies: Iterable<StoredPolicy>, localCluster: string, defaultLocalCluster: boolean, warnings: string[], enforces: (cluster: string) => boolean = () => true): Rule[] {
  const rules: Rule[] = [];
  const sorted = [...policies].sort(byPolicyKey);
  for (const p of sorted) {
    if (p.cluster !== localCluster && !isMeshWide(p.manifest)) continue;
    if (p.cluster !== localCluster && !enforces(p.cluster)) {
      warnings.push(notAcceptedWarning(p));
      continue;
    }
    try {
      rules.push(...policyRules(p.manifest, p.name, p.cluster, { localCluster, defaultLocalCluster }, warnings));
    } catch (err) {
      warnings.push(`${p.cluster}/${p.name}: not enforced: ${(err as Error).message}`);
    }
  }
  return rules;
}

/** Why a mesh-wide policy of a cluster whose policies this one did not accept is not enforced. */
export function notAcceptedWarning(p: StoredPolicy): string {
  return `${p.cluster}/${p.name}: mesh-wide, not enforced: this cluster did not accept ${p.cluster}'s policies (clustermesh connect --a-accept-policies)`;
}

const byPolicyKey = (a: StoredPolicy, b: StoredPolicy) => (`${a.cluster}/${a.name}` < `${b.cluster}/${b.name}` ? -1 : 1);

/**
 * The policies an agent holds (policy/datapath.ts): its own cluster's and the other clusters' mesh-wide ones. A
 * remote's policy that is not mesh-wide is never enforced here, so it is not held; one of a cluster whose policies
 * are not accepted changes a warning, never a rule. Neither costs a compile: a remote rewriting its policies in a
 * loop made every agent recompile every local endpoint (and sort every remote policy held) per write.
 */
export class AgentPolicies {
  private readonly byKey = new Map<string, StoredPolicy>();

  /** `enforces(cluster)`: whether this cluster accepted that remote's mesh-wide policies (records/trust.ts). */
  constructor(private readonly localCluster: string, private readonly enforces: (cluster: string) => boolean = () => true) {}

  /** Holds `p` under its etcd key; true when the rules enforced may have changed (compile again). */
  upsert(key: string, p: StoredPolicy): boolean {
    const old = this.byKey.get(key);
    if (p.cluster === this.localCluster || isMeshWide(p.manifest)) this.byKey.set(key, p);
    else this.byKey.delete(key);
    return this.enforced(old) || this.enforced(p);
  }

  /** True when the rules enforced may have changed. */
  remove(key: string): boolean {
    const old = this.byKey.get(key);
    this.byKey.delete(key);
    return this.enforced(old);
  }

  /** The policies enforced now: enforcedRules' input. */
  enforcedNow(): StoredPolicy[] {
    return [...this.byKey.values()].filter((p) => this.enforced(p));
  }

  /** A warning per mesh-wide policy held and not enforced (its cluster's policies not accepted), as enforcedRules words it. */
  notAccepted(): string[] {
    return [...this.byKey.values()].filter((p) => p.cluster !== this.localCluster && !this.enforces(p.cluster)).sort(byPolicyKey).map(notAcceptedWarning);
  }

  private enforced(p: StoredPolicy | undefined): boolean {
    return p !== undefined && (p.cluster === this.localCluster || (isMeshWide(p.manifest) && this.enforces(p.cluster)));
  }
}

/**
 * Every prefix the rules name (CIDRs and their exceptions), /0 included: a
 * /0 is a CIDR identity of its family, so 0.0.0.0/0 never covers IPv6 (and
 * ::/0 never IPv4), as the API's ipBlock and Cilium's toCIDR mean.
 */
export function rulePrefixes(rules: Rule[]): Map<string, Prefix> {
  const out = new Map<string, Prefix>();
  for (const r of rules)
    for (const p of r.peers)
      if (p.kind === 'cidr')
        for (const x of [p.cidr, ...p.except.map((e) => e.prefix)]) {
          const norm = { addr: maskPrefix(x.addr, x.cidr), cidr: x.cidr };
          out.set(formatPrefix(norm), norm);
        }
  return out;
}
