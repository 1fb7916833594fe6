/**
 * Which peer owns each allowed-IP prefix (an address belongs to one peer: WireGuard's cryptokey routing), and the
 * key a peer keeps per allowed IP (peer.ts allowedIPKeys), shared with this map.
 *
 *   IPv4 prefix ──▶ addr × 64 + cidr (< 2^38, exact in a double) ──▶ PairMap (addr, cidr) → peer id
 *   IPv6 prefix ──▶ prefixKey text ("hex/cidr", net/ip.ts)      ──▶ Map key → peer id
 *
 * Why (issue 16, s22node): an agent's peers are one per remote node (16,000 at 16 × 1000), each with two IPv4
 * allowed IPs (its pod CIDR and, in mesh mode, its node address). As "hex/cidr" strings in a Map<string, Peer>
 * that was ~160 B per peer (two ~40 B strings and two ~38 B Map entries); as numbers it is a PairMap position per
 * prefix (12 B per position: 16–32 B per key while the table only grows, ≤ 48 B after removals) and, in the peer,
 * a double array element (8 B, no string, no box when all of a peer's keys are IPv4). IPv6 prefixes keep their
 * text keys in a plain Map (rare in the mesh; an IPv6 key does not fit a two-word PairMap key).
 *
 * Bounds: one entry per prefix held by some peer (each peer's allowed IPs, bounded by its caller: the UAPI or the
 * reconciler), plus the PairMap's 8 KiB of tables. The PairMap's hash is simple tabulation over random tables
 * (probetable.ts): prefixes that remote clusters choose cannot aim at one position. Values there are 31-bit, so
 * an owner whose id is 2^31 or more (after 2^31 peer additions) is kept in the Map instead, under the same
 * number key: get, set and delete look at both.
 */
import { prefixFromKey, prefixKey, type Prefix } from '../net/ip.js';
import { PairMap } from '../net/pairmap.js';

/** An allowed IP's key: an IPv4 prefix (length ≤ 32) as addr × 64 + cidr, any other as its prefixKey() text. */
export type AllowedKey = number | string;

/** The key of prefix `p` (its bytes as given, as prefixKey: one key per prefix and family). */
export function allowedKey(p: Prefix): AllowedKey {
  if (p.addr.length !== 4 || !Number.isInteger(p.cidr) || p.cidr < 0 || p.cidr > 32) return prefixKey(p);
  return p.addr.readUInt32BE(0) * 64 + p.cidr;
}

/** The prefix of an allowedKey() (its inverse: the same bytes and length; a new Buffer on each call). */
export function prefixOfKey(k: AllowedKey): Prefix {
  if (typeof k === 'string') return prefixFromKey(k);
  const cidr = k % 64;
  const addr = Buffer.alloc(4);
  addr.writeUInt32BE((k - cidr) / 64, 0);
  return { addr, cidr };
}

const MAX_PAIR_VALUE = 0x7fffffff;

/** Prefix (an AllowedKey) → owning peer's id. Not ordered (nothing iterates it). */
export class PrefixOwners {
  /** IPv4 prefixes: (address, length) → peer id. */
  private readonly v4 = new PairMap();
  /** IPv6 prefixes by text, and IPv4 ones whose owner's id does not fit the PairMap's 31-bit values. */
  private readonly other = new Map<AllowedKey, number>();

  /** Prefixes held. */
  get size(): number {
    return this.v4.size + this.other.size;
  }

  /** The owner's peer id, or undefined. */
  get(k: AllowedKey): number | undefined {
    if (typeof k === 'number') {
      const id = this.v4.get((k / 64) >>> 0, k % 64);
      if (id !== undefined) return id;
    }
    return this.other.get(k);
  }

  /** `id` (a peer id: an integer in [0, 2^32)) owns `k` now. */
  set(k: AllowedKey, id: number): void {
    if (typeof k === 'number' && id <= MAX_PAIR_VALUE) {
      this.v4.set((k / 64) >>> 0, k % 64, id);
      this.other.delete(k);
      return;
    }
    if (typeof k === 'number') this.v4.delete((k / 64) >>> 0, k % 64);
    this.other.set(k, id);
  }

  /** Nobody owns `k` now. */
  delete(k: AllowedKey): void {
    if (typeof k === 'number') this.v4.delete((k / 64) >>> 0, k % 64);
    this.other.delete(k);
  }
}
