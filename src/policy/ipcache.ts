/**
 * The agent's ipcache table: every prefix records which sources put it there,
 * and the data path gets the value of the one that wins.
 *
 * Several sources can name the same prefix: a pod's endpoint record (its /32),
 * this node's local endpoint (the same /32 with its endpoint id), a node's
 * addresses (ours = host, the router address too; others' = remote-node), and
 * every CIDR a policy rule names (a CIDR identity, possibly a /32 that is also a
 * pod's or a node's address). One slot per prefix with "last writer wins" and
 * "the first deletion removes it" made a policy naming a pod's address turn that
 * pod into `world` for everyone, even after the policy was deleted. Here each
 * prefix keeps its owners; the value is the highest-precedence owner's
 * (ties: the latest claim), and removing an owner restores what the others say.
 *
 * Precedence (highest first):
 *   node            a node's own addresses and its router address: infrastructure the
 *                   data path relies on (host / remote-node), not taken over by a pod
 *   local-endpoint  an endpoint of this node (carries the local endpoint id)
 *   endpoint        an endpoint record from etcd (any node, any cluster)
 *   cidr            a CIDR identity a policy rule names
 *
 * Pure: no native calls. `takeChanges()` says what to write to the native
 * ipcache since the last call (value, or null = delete).
 */
import { formatPrefix, parsePrefix } from '../net/ip.js';

export type IpcacheOwnerKind = 'node' | 'local-endpoint' | 'endpoint' | 'cidr';

export const OWNER_PRECEDENCE: Record<IpcacheOwnerKind, number> = { node: 3, 'local-endpoint': 2, endpoint: 1, cidr: 0 };

export interface IpcacheValue {
  identity: number;
  endpoint: number;
}

interface Claim extends IpcacheValue {
  kind: IpcacheOwnerKind;
  seq: number;
}

/** "100.65.1.10" and "100.65.1.10/32" are one prefix: `addr/len`, host bits cleared. */
export function canonicalPrefix(addrOrPrefix: string): string | null {
  try {
    return formatPrefix(parsePrefix(addrOrPrefix));
  } catch {
    return null;
  }
}

export class IpcacheTable {
  /** prefix -> owner -> claim */
  private readonly owners = new Map<string, Map<string, Claim>>();
  /** What the data path holds (as last taken). */
  private readonly installed = new Map<string, IpcacheValue>();
  private readonly touched = new Set<string>();
  private seq = 0;

  /** `owner` says `prefix` is `value`. Re-setting the same claim does not change its age. */
  set(addrOrPrefix: string, owner: string, kind: IpcacheOwnerKind, value: IpcacheValue): void {
    const p = canonicalPrefix(addrOrPrefix);
    if (!p) return;
    let o = this.owners.get(p);
    if (!o) this.owners.set(p, (o = new Map()));
    const cur = o.get(owner);
    if (cur && cur.kind === kind && cur.identity === value.identity && cur.endpoint === value.endpoint) return;
    o.set(owner, { kind, identity: value.identity, endpoint: value.endpoint, seq: cur && cur.kind === kind ? cur.seq : ++this.seq });
    this.touched.add(p);
  }

  /** `owner` no longer names `prefix`; what other owners say takes effect. */
  delete(addrOrPrefix: string, owner: string): void {
    const p = canonicalPrefix(addrOrPrefix);
    if (!p) return;
    const o = this.owners.get(p);
    if (!o || !o.delete(owner)) return;
    if (o.size === 0) this.owners.delete(p);
    this.touched.add(p);
  }

  /** The value that wins for `prefix` now (not necessarily taken yet). */
  get(addrOrPrefix: string): (IpcacheValue & { kind: IpcacheOwnerKind; owner: string }) | undefined {
    const p = canonicalPrefix(addrOrPrefix);
    const o = p ? this.owners.get(p) : undefined;
    if (!o) return undefined;
    let best: [string, Claim] | undefined;
    for (const e of o) {
      const b = best?.[1];
      const c = e[1];
      if (!b || OWNER_PRECEDENCE[c.kind] > OWNER_PRECEDENCE[b.kind] || (OWNER_PRECEDENCE[c.kind] === OWNER_PRECEDENCE[b.kind] && c.seq > b.seq)) best = e;
    }
    return best ? { identity: best[1].identity, endpoint: best[1].endpoint, kind: best[1].kind, owner: best[0] } : undefined;
  }

  /** Owners of `prefix` (for status and tests). */
  ownersOf(addrOrPrefix: string): Array<{ owner: string; kind: IpcacheOwnerKind }> {
    const p = canonicalPrefix(addrOrPrefix);
    return [...(p ? (this.owners.get(p) ?? []) : [])].map(([owner, c]) => ({ owner, kind: c.kind }));
  }

  /** Prefixes the data path holds. */
  get size(): number {
    return this.installed.size;
  }

  /** What changed in the winning values since the last call: prefix -> value, or null to delete. */
  takeChanges(): Map<string, IpcacheValue | null> {
    const out = new Map<string, IpcacheValue | null>();
    for (const p of this.touched) {
      const want = this.get(p);
      const have = this.installed.get(p);
      if (!want) {
        if (have) {
          this.installed.delete(p);
          out.set(p, null);
        }
        continue;
      }
      if (have && have.identity === want.identity && have.endpoint === want.endpoint) continue;
      const v = { identity: want.identity, endpoint: want.endpoint };
      this.installed.set(p, v);
      out.set(p, v);
    }
    this.touched.clear();
    return out;
  }
}
