// Seeded random claim/release sequences for RouteTable (src/agent/routetable.ts), as the peer
// reconciler makes them (a peer's routes replaced: release the old, claim the new), with the
// reference: the CIDRs some peer claims, recomputed from the peers' routes.
import type { RouteClaims, RouteTable } from '../../src/agent/routetable.js';

export { prng } from './prng.js';

/**
 * A RouteTable's books (count × 2 + installed) of CIDRs `also` and of those its Map keeps an entry for, 0 left out:
 * read through booksOf, since a CIDR claimed once and installed has no entry (the claims' trie tells it, s39).
 */
export function readBooks(table: RouteTable, also: Iterable<string>): Map<string, number> {
  const t = table as unknown as { books: Map<string, number>; booksOf(c: string): number };
  const out = new Map<string, number>();
  for (const c of new Set([...t.books.keys(), ...also])) {
    const v = t.booksOf(c);
    if (v > 0) out.set(c, v);
  }
  return out;
}

/** `n` CIDRs in the pods' ranges (100.64.0.0/10, fd00::/8), IPv4 and IPv6 mixed. */
export function cidrPool(n: number): string[] {
  return Array.from({ length: n }, (_, i) => (i % 3 === 2 ? `fd00:64:${i.toString(16)}::/64` : `100.${64 + (i >> 8)}.${i & 255}.0/24`));
}

/**
 * Drives `steps` random changes into `table`: peers come, change their routes
 * (overlapping other peers', as a relay handover does) and go; flush() now and
 * then; `between()` after each step (complete a batch, yield...). Returns the
 * reference, the CIDRs some peer claims at the end (`want`), and every claim
 * still held (`held`: a CIDR once per peer claiming it).
 */
export async function randomClaims(
  table: RouteClaims,
  rnd: () => number,
  opts: { steps: number; peers: number; pool: string[]; between(): Promise<void> | void },
): Promise<{ want: Set<string>; held: string[] }> {
  const peers = new Map<number, string[]>();
  const pick = () => {
    const k = Math.floor(rnd() * 4);
    return [...new Set(Array.from({ length: k }, () => opts.pool[Math.floor(rnd() * opts.pool.length)]!))];
  };
  for (let s = 0; s < opts.steps; s++) {
    const p = Math.floor(rnd() * opts.peers);
    const x = rnd();
    if (x < 0.45) {
      const old = peers.get(p);
      const routes = pick();
      if (old) table.release(old);
      table.claim(routes);
      peers.set(p, routes);
    } else if (x < 0.65) {
      const old = peers.get(p);
      if (old) table.release(old);
      peers.delete(p);
    } else table.flush();
    await opts.between();
  }
  const held = [...peers.values()].flat();
  return { want: new Set(held), held };
}
