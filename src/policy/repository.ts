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
  const sorted = [...policies].sort((a, b) => (`${a.cluster}/${a.name}` < `${b.cluster}/${b.name}` ? -1 : 1));
  for (const p of sorted) {
    if (p.cluster !== localCluster && !isMeshWide(p.manifest)) continue;
    if (p.cluster !== localCluster && !enforces(p.cluster)) {
      warnings.push(`${p.cluster}/${p.name}: mesh-wide, not enforced: this cluster did not accept ${p.cluster}'s policies (clustermesh connect --a-accept-policies)`);
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
