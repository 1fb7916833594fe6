/**
 * The ipcache table as it was before its slots were packed into columns
 * (src/policy/ipcache.ts, commit 102da25): one object per prefix. Kept as the
 * oracle the packed table is checked against (test/unit/ipcache-packed.test.ts).
 */
import { canonicalPrefix, type IpcacheOwnerKind, type IpcacheValue } from '../../src/policy/ipcache.js';

const OWNER_PRECEDENCE: Record<IpcacheOwnerKind, number> = { node: 3, 'local-endpoint': 2, endpoint: 1, cidr: 0 };

interface Claim extends IpcacheValue {
  kind: IpcacheOwnerKind;
  seq: number;
}

/**
 * The slot key: a host prefix (/32, /128) by its address text alone, and then
 * the caller's own string when it is already canonical (an endpoint record's
 * address, so the text is shared: ~35 B per remote endpoint), any other prefix
 * as canonicalPrefix. takeChanges gives every prefix back as `addr/len`.
 */
function slotKey(addrOrPrefix: string): string | null {
  const p = canonicalPrefix(addrOrPrefix);
  const host = !p ? -1 : p.endsWith('/128') ? p.length - 4 : p.endsWith('/32') && !p.includes(':') ? p.length - 3 : -1;
  if (host < 0) return p;
  const addr = p!.slice(0, host);
  return addr === addrOrPrefix ? addrOrPrefix : addr;
}

/** A slot key as `addr/len`. */
const fullPrefix = (key: string): string => (key.includes('/') ? key : `${key}/${key.includes(':') ? 128 : 32}`);

/**
 * One prefix. Nearly every prefix has one owner (a pod's /32): that claim is
 * held inline, further owners in `more`; beside it what the data path holds.
 * One object per prefix instead of a Map, a claim and an installed value (~200 B
 * less per remote endpoint, bench/memory.ts).
 */
interface Slot {
  /** The inline claim's owner; undefined when it has none (then `more` is empty too). */
  owner: string | undefined;
  kind: IpcacheOwnerKind;
  identity: number;
  endpoint: number;
  seq: number;
  /** Owners after the inline one, in the order they came. */
  more: Map<string, Claim> | undefined;
  /** What the data path holds (as last taken); -1: nothing. */
  instIdentity: number;
  instEndpoint: number;
}

export class OracleIpcacheTable {
  private readonly slots = new Map<string, Slot>();
  private readonly touched = new Set<string>();
  private installedCount = 0;
  private seq = 0;

  /** `owner` says `prefix` is `value`. Re-setting the same claim does not change its age. */
  set(addrOrPrefix: string, owner: string, kind: IpcacheOwnerKind, value: IpcacheValue): void {
    const p = slotKey(addrOrPrefix);
    if (!p) return;
    let s = this.slots.get(p);
    if (!s) this.slots.set(p, (s = { owner: undefined, kind, identity: 0, endpoint: 0, seq: 0, more: undefined, instIdentity: -1, instEndpoint: 0 }));
    const cur = s.owner === owner ? s : s.more?.get(owner);
    if (cur && cur.kind === kind && cur.identity === value.identity && cur.endpoint === value.endpoint) return;
    const seq = cur && cur.kind === kind ? cur.seq : ++this.seq;
    if (s.owner === undefined || s.owner === owner) Object.assign(s, { owner, kind, identity: value.identity, endpoint: value.endpoint, seq });
    else (s.more ??= new Map()).set(owner, { kind, identity: value.identity, endpoint: value.endpoint, seq });
    this.touched.add(p);
  }

  /** `owner` no longer names `prefix`; what other owners say takes effect. */
  delete(addrOrPrefix: string, owner: string): void {
    const p = slotKey(addrOrPrefix);
    const s = p ? this.slots.get(p) : undefined;
    if (!s || s.owner === undefined) return;
    if (s.owner === owner) {
      // the next owner in order moves inline
      const next = s.more?.entries().next().value as [string, Claim] | undefined;
      if (next) {
        s.more!.delete(next[0]);
        Object.assign(s, { owner: next[0], ...next[1] });
      } else s.owner = undefined;
      if (s.more?.size === 0) s.more = undefined;
    } else if (!s.more?.delete(owner)) return;
    else if (s.more.size === 0) s.more = undefined;
    this.touched.add(p!);
  }

  /** The winning claim of a slot with owners. */
  private static best(s: Slot): [string, Claim] | undefined {
    if (s.owner === undefined) return undefined;
    let best: [string, Claim] = [s.owner, s];
    for (const e of s.more ?? []) {
      const b = best[1];
      const c = e[1];
      if (OWNER_PRECEDENCE[c.kind] > OWNER_PRECEDENCE[b.kind] || (OWNER_PRECEDENCE[c.kind] === OWNER_PRECEDENCE[b.kind] && c.seq > b.seq)) best = e;
    }
    return best;
  }

  /** The value that wins for `prefix` now (not necessarily taken yet). */
  get(addrOrPrefix: string): (IpcacheValue & { kind: IpcacheOwnerKind; owner: string }) | undefined {
    const p = slotKey(addrOrPrefix);
    const s = p ? this.slots.get(p) : undefined;
    const best = s && OracleIpcacheTable.best(s);
    return best ? { identity: best[1].identity, endpoint: best[1].endpoint, kind: best[1].kind, owner: best[0] } : undefined;
  }

  /** Owners of `prefix`, in the order they came (for status and tests). */
  ownersOf(addrOrPrefix: string): Array<{ owner: string; kind: IpcacheOwnerKind }> {
    const p = slotKey(addrOrPrefix);
    const s = p ? this.slots.get(p) : undefined;
    if (!s || s.owner === undefined) return [];
    return [{ owner: s.owner, kind: s.kind }, ...[...(s.more ?? [])].map(([owner, c]) => ({ owner, kind: c.kind }))];
  }

  /** Prefixes the data path holds. */
  get size(): number {
    return this.installedCount;
  }

  /** What changed in the winning values since the last call: prefix -> value, or null to delete. */
  takeChanges(): Map<string, IpcacheValue | null> {
    const out = new Map<string, IpcacheValue | null>();
    for (const p of this.touched) {
      const s = this.slots.get(p);
      if (!s) continue;
      const want = OracleIpcacheTable.best(s)?.[1];
      const have = s.instIdentity !== -1;
      if (!want) {
        this.slots.delete(p); // no owner left: the slot goes with the data path's entry
        if (have) {
          this.installedCount--;
          out.set(fullPrefix(p), null);
        }
        continue;
      }
      if (have && s.instIdentity === want.identity && s.instEndpoint === want.endpoint) continue;
      if (!have) this.installedCount++;
      s.instIdentity = want.identity;
      s.instEndpoint = want.endpoint;
      out.set(fullPrefix(p), { identity: want.identity, endpoint: want.endpoint });
    }
    this.touched.clear();
    return out;
  }
}
