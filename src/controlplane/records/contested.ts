/**
 * Where clusters' pod CIDRs overlap (records/trust.ts: there the range is nobody's remote's). Pre-flight keeps pins
 * apart, but two `connect`s run at once or a pin written by hand do not.
 *
 * A sort and one sweep over every prefix (CIDR prefixes overlap only by one holding the other): O(n log n) for n
 * prefixes of all clusters, plus the pairs of owners of nested prefixes (many clusters pinning the same nested
 * prefixes, which pre-flight refuses: 255 clusters × the same 16 took 400 ms per reindex in the s14 re-review).
 * Comparing every cluster's prefixes with every other's cost n² per pin change: 255 pins of 16 pod CIDRs each
 * took ~1 s of the event loop per pin (docs/benchmarks.md).
 */
import { prefixCovers, type Prefix } from '../../net/ip.js';

interface Owned {
  p: Prefix;
  owner: string;
}

/** One prefix and the clusters naming it. */
interface Group {
  p: Prefix;
  owners: Set<string>;
}

const order = (a: Owned, b: Owned) => a.p.addr.length - b.p.addr.length || Buffer.compare(a.p.addr, b.p.addr) || a.p.cidr - b.p.cidr;
const same = (a: Prefix, b: Prefix) => a.cidr === b.cidr && a.addr.equals(b.addr);

/**
 * Per cluster (except `local`: ours stays ours), the parts of its pod CIDRs another cluster's overlap: of each
 * overlapping pair the narrower prefix (either, when equal), each once. A cluster's own prefixes never contest
 * each other. Clusters without a contested part are absent.
 */
export function contestedPodCIDRs(clusters: Iterable<{ name: string; podCIDRs: Prefix[] }>, local: string): Map<string, Prefix[]> {
  const all: Owned[] = [];
  for (const c of clusters) for (const p of c.podCIDRs) all.push({ p, owner: c.name });
  all.sort(order);
  const out = new Map<string, Prefix[]>();
  // every add of a group's prefix happens while that group is swept: comparing with the last entry dedupes
  const add = (owner: string, p: Prefix) => {
    if (owner === local) return;
    const l = out.get(owner);
    if (!l) out.set(owner, [p]);
    else if (l[l.length - 1] !== p) l.push(p);
  };
  // the prefixes holding the current one, widest first (sorted by address, then wider first: a chain)
  const holders: Group[] = [];
  for (let i = 0; i < all.length; ) {
    const g: Group = { p: all[i]!.p, owners: new Set() };
    for (; i < all.length && same(all[i]!.p, g.p); i++) g.owners.add(all[i]!.owner);
    // a holder that does not hold this prefix ends before it, so before every later one
    while (holders.length && !prefixCovers(holders[holders.length - 1]!.p, g.p)) holders.pop();
    if (g.owners.size > 1) for (const o of g.owners) add(o, g.p);
    for (const h of holders)
      for (const o of h.owners)
        for (const mine of g.owners)
          if (mine !== o) {
            add(o, g.p);
            add(mine, g.p);
          }
    holders.push(g);
  }
  return out;
}
