/**
 * Node addresses claimed by peers (peers.ts): each address is held by the first peer that claims it; the others
 * that claim it, in order, take over when it goes. A node must not take over another's address: what a peer holds
 * is what its allowed IPs carry (policy on) and what its endpoint may roam to (wireguard/roaming.ts).
 *
 * Bounded by the peers' records: ≤ 16 addresses per node, one entry per distinct address. A lone claimant (nearly
 * every address) is kept as its id, not a one-element array. Address keys are the reconciler's claim keys
 * (peers.ts claimKey: a record's address string itself), so an entry adds no string of its own (after a relist's
 * same-content copy of the record, the entry keeps the first record's string: the copy's is garbage).
 */
import type { Logger } from '../log.js';

/** A claim key as its host prefix's text ("a/32", "a/128"), as logs named it before keys were bare addresses. */
const asPrefix = (a: string): string => (a.includes('/') ? a : `${a}/${a.includes(':') ? 128 : 32}`);

export class AddressClaims {
  private readonly byAddress = new Map<string, string | string[]>();

  /** The peer id holding address key `a` (its first claimant), if any. */
  holder(a: string): string | undefined {
    const ids = this.byAddress.get(a);
    return typeof ids === 'string' ? ids : ids?.[0];
  }

  /**
   * Peer `id` claimed `prev` and claims `want` now (address keys). Returns the peers that took over an address `id`
   * let go (their allowed IPs and roaming sets grow); a claim on a held address is logged and waits its turn.
   */
  update(id: string, prev: readonly string[], want: ReadonlySet<string>, log: Logger): Set<string> {
    const handOver = new Set<string>();
    for (const a of prev) {
      if (want.has(a)) continue;
      const ids = this.byAddress.get(a)!;
      if (typeof ids === 'string') {
        if (ids === id) this.byAddress.delete(a);
        continue;
      }
      const i = ids.indexOf(id);
      if (i < 0) continue;
      ids.splice(i, 1);
      if (i === 0) handOver.add(ids[0]!); // two or more claimed it: one is left
      if (ids.length === 1) this.byAddress.set(a, ids[0]!);
    }
    for (const a of want) {
      const ids = this.byAddress.get(a);
      if (ids === undefined) this.byAddress.set(a, id);
      else if (typeof ids === 'string' ? ids !== id : !ids.includes(id)) {
        if (typeof ids === 'string') this.byAddress.set(a, [ids, id]);
        else ids.push(id);
        log.warn({ address: asPrefix(a), holder: this.holder(a), claimant: id }, 'two nodes claim one address: it stays with the first');
      }
    }
    handOver.delete(id);
    return handOver;
  }
}
