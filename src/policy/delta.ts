/**
 * Policy by delta: an identity that appears, goes or changes its labels
 * changes only its own group in each endpoint's maps (the entries whose remote
 * identity it is; nothing in a map depends on another identity's labels), so
 * the agent rewrites that group instead of recompiling and swapping every map.
 *
 * For each local endpoint and enforced direction: the group's entries now
 * (compile.ts identityEntries, the rules that select the endpoint, unchanged
 * since the last full compile) against the entries the endpoint's compiled
 * policy holds for it; a difference goes to the data path as one
 * Device.policyMapUpdate (the old entries removed, the new ones in compile
 * order: the map equals a full build's) and into the compiled policy.
 *
 * Cost: per identity, its selector matches against the rules selecting each
 * endpoint and its own entries; plus one pass over each compiled entry list to
 * take the old group out (no selector matching, no encoding, no native
 * rebuild). A rule change still recompiles everything (datapath.ts).
 */
import type { NativeDevice } from '../native/binding.js';
import { encodeEntries, identityEntries, type EndpointPolicy, type IdentityUniverse, type PolicyEntry } from './compile.js';
import type { ContainerPort } from './ports.js';
import type { Rule } from './rules.js';

/** A local endpoint as the delta needs it. */
export interface DeltaEndpoint {
  /** Native endpoint id. */
  id: number;
  /** namespace/name: the key of its compiled policy. */
  key: string;
  identity: number;
  ports: readonly ContainerPort[];
}

const sameEntry = (a: PolicyEntry, b: PolicyEntry): boolean =>
  a.identity === b.identity && a.proto === b.proto && a.deny === b.deny && !!a.redirect === !!b.redirect && a.lo === b.lo && a.hi === b.hi && a.rule === b.rule;

/**
 * Applies the groups of `ids` (identities whose records changed since the
 * maps were last written; 0 is never one) to every endpoint's maps and
 * compiled policy. Returns how many entries were written (removed + added).
 */
export function applyIdentityDelta(
  dev: NativeDevice,
  endpoints: Iterable<DeltaEndpoint>,
  compiled: Map<string, EndpointPolicy>,
  ids: ReadonlySet<number>,
  u: IdentityUniverse,
  ruleNumber: (r: Rule) => number,
): number {
  let written = 0;
  for (const ep of endpoints) {
    const pol = compiled.get(ep.key);
    if (!pol) continue;
    for (const dir of ['ingress', 'egress'] as const) {
      const entries = pol[dir];
      if (!entries) continue; // not enforced: no map, nothing a remote identity changes
      const kept: PolicyEntry[] = [];
      const old: PolicyEntry[] = [];
      for (const e of entries) (ids.has(e.identity) ? old : kept).push(e);
      const fresh: PolicyEntry[] = [];
      for (const id of ids) fresh.push(...identityEntries(pol.selectedBy[dir], u, ruleNumber, ep.ports, id));
      if (old.length === fresh.length && old.every((e, i) => sameEntry(e, fresh[i]!))) continue;
      pol[dir] = kept.concat(fresh);
      written += old.length + fresh.length;
      // false: the data path has no such map (it and `compiled` disagree, a bug): the whole maps restore it
      if (!dev.policyMapUpdate(ep.id, dir, encodeEntries(fresh)!, encodeEntries(old)!)) dev.setEndpointPolicy(ep.id, ep.identity, encodeEntries(pol.ingress), encodeEntries(pol.egress));
    }
  }
  return written;
}
