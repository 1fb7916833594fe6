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
import { formatIPv4Value, formatPrefix, ipv4HostValue, parsePrefix, type Prefix } from '../net/ip.js';
import { U32Map } from '../net/u32map.js';
import { formAddress, formBase, isShortIPv4Form, shortIPv4Form } from '../controlplane/compactkeys.js';
import { SlotColumns } from './slotcolumns.js';

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

/**
 * A slot's key: an IPv4 host (/32) as its address, a number (held in a U32Map:
 * ~13 B per remote endpoint where a Map entry was ~46 B); an IPv6 host (/128)
 * by its address text alone, the caller's own string when it is already
 * canonical (an endpoint record's address, so the text is shared); any other
 * prefix as canonicalPrefix. takeChanges gives every prefix back as `addr/len`.
 */
type SlotKey = number | string;

function slotKey(addrOrPrefix: string): SlotKey | null {
  // the data path asks twice in a row for one record's address (EndpointsByAddress, then set): parse once
  if (addrOrPrefix === lastKey.in) return lastKey.out;
  lastKey.in = addrOrPrefix;
  // nearly every call: a pod's address, read without a Buffer
  const quad = ipv4HostValue(addrOrPrefix);
  if (quad !== undefined) return (lastKey.out = quad);
  let p: Prefix | null;
  try {
    p = parsePrefix(addrOrPrefix);
  } catch {
    p = null;
  }
  if (!p) lastKey.out = null;
  else if (p.cidr === 32 && p.addr.length === 4) lastKey.out = p.addr.readUInt32BE(0);
  else {
    const text = formatPrefix(p);
    const addr = p.cidr === 128 ? text.slice(0, -4) : text;
    lastKey.out = addr === addrOrPrefix ? addrOrPrefix : addr;
  }
  return lastKey.out;
}
/** slotKey's last answer (a pure function of its input). */
const lastKey: { in: string | undefined; out: SlotKey | null } = { in: undefined, out: null };

/** A slot key as `addr/len`. */
const fullPrefix = (key: SlotKey): string =>
  typeof key === 'number' ? `${formatIPv4Value(key)}/32` : key.includes('/') ? key : `${key}/128`;

/** A slot's numeric fields (slotcolumns.ts). */
const IDENTITY = 0;
const ENDPOINT = 1;
/** The inline claim's age and kind as one number: seq × 4 + OWNER_PRECEDENCE[kind]. */
const SEQ_KIND = 2;
const KIND_OF: IpcacheOwnerKind[] = ['cidr', 'endpoint', 'local-endpoint', 'node'];
/** The largest claim sequence whose seq × 4 + 3 a slot column holds inline (≤ 2^32 - 3, slotcolumns.ts). */
const SEQ_LIMIT = 2 ** 30 - 2;

/**
 * How slot `p` holds inline owner `owner`: a form naming the slot's own address as its base index (IpcacheTable's
 * comment; ownerAt gives the text back), any other owner as it is. One owner, one code: codes compare as owners do.
 */
const ownerCode = (p: SlotKey, owner: string): string | number =>
  typeof p === 'number' && isShortIPv4Form(owner) && formAddress(owner) === p ? formBase(owner) : owner;

/** What the data path held for a slot (IpcacheTable's `touched`): null none, a number an identity with endpoint +0 (-0 stays an object). */
type Was = IpcacheValue | number | null;
const wasOf = (identity: number, endpoint: number): Was => (Object.is(endpoint, 0) ? identity : { identity, endpoint });

/** A claim as the ipcache's callers see it. */
type Owned = Claim & { owner: string };

/**
 * One prefix is a slot in columns (slotcolumns.ts: 16 B, two numbers and the
 * owner, the local endpoint id in a side map only when it is not 0; 20 B before s34; an 88 B object per remote
 * endpoint before that, bench/memory.ts). Nearly every prefix has one
 * owner (a pod's /32): that claim is held inline (the slot's string is its
 * owner; undefined when it has none, and then it has no further owners),
 * further owners in `more`, in the order they came. What the data path holds
 * is not stored per slot: takeChanges handed it every winner, so a slot's
 * winner before its first change in a round is what it holds, and `touched`
 * keeps that for the slots changed since. An inline owner that is an endpoint key's short IPv4 form naming
 * the slot's own address (compactkeys.ts: a pod's record, `…/<node>/<address>`)
 * is held as its base index, a Smi in the string's place: the form is those two
 * numbers (shortIPv4Form gives it back), and its 24 B string is then held by no
 * table (admission's holds the same two numbers: nodecells.ts).
 */
export class IpcacheTable {
  /** Slots by key: IPv4 hosts, nearly every slot (a pod's /32), in `hosts4`; any other prefix in `others`. */
  private readonly hosts4 = new U32Map();
  private readonly others = new Map<string, number>();
  /** The local endpoint id sparse (slotcolumns.ts): 0 for every remote endpoint, nearly every slot; this node's in a side map. */
  private readonly cols = new SlotColumns(3, [0, 0, 0], [ENDPOINT]);
  /** Owners after the inline one, by slot (rare: a prefix with several owners). */
  private readonly more = new Map<number, Map<string, Claim>>();
  /**
   * Slots changed since the last takeChanges, each with the value that won before its first change then (null:
   * none; a number: that identity with endpoint +0, a remote endpoint's value without an object): what the data path
   * holds, since takeChanges gave it every winner then. No column keeps that value for every slot (8 B per remote
   * endpoint), only this map for the slots a round touches.
   */
  private readonly touched = new Map<SlotKey, Was>();
  private installedCount = 0;
  private seq = 0;

  /**
   * `seqLimit`: the largest claim sequence number handed out before the claims are renumbered (renumber()):
   * SEQ_KIND holds seq × 4 + kind inline only up to 2^32 - 3, so past ~2^30 claims (a remote flipping its
   * endpoints' addresses drives this) every slot's sequence would spill to slotcolumns' side map for good,
   * ~49 B each. Lower only in tests.
   */
  constructor(private readonly seqLimit = SEQ_LIMIT) {}

  /** Slot fields held outside the columns (slotcolumns.ts; 0 unless a caller stores numbers beyond 32 bits). */
  get spilled(): number {
    return this.cols.spilled;
  }

  /** `owner` says `prefix` is `value`. Re-setting the same claim does not change its age. */
  set(addrOrPrefix: string, owner: string, kind: IpcacheOwnerKind, value: IpcacheValue): void {
    const p = slotKey(addrOrPrefix);
    if (p === null) return;
    // before any claim is read: renumber() rewrites them
    if (this.seq >= this.seqLimit) this.renumber();
    let s = this.slotOf(p);
    if (s === undefined) {
      s = this.cols.alloc();
      if (typeof p === 'number') this.hosts4.set(p, s);
      else this.others.set(p, s);
    }
    const held = this.cols.str(s);
    const mine = held !== undefined && held === ownerCode(p, owner); // (compared as held: no owner text made)
    const cur = mine ? this.inlineClaim(s, owner) : this.more.get(s)?.get(owner);
    if (cur && cur.kind === kind && cur.identity === value.identity && cur.endpoint === value.endpoint) return;
    const seq = cur && cur.kind === kind ? cur.seq : ++this.seq;
    this.touch(s, p);
    if (held === undefined || mine) this.setInline(s, p, owner, { kind, identity: value.identity, endpoint: value.endpoint, seq });
    else {
      let m = this.more.get(s);
      if (!m) this.more.set(s, (m = new Map()));
      m.set(owner, { kind, identity: value.identity, endpoint: value.endpoint, seq });
    }
  }

  /** Notes slot `s` (key `p`) as changed, before its change, with what the data path holds for it (see `touched`). */
  private touch(s: number, p: SlotKey): void {
    if (this.touched.has(p)) return;
    if (this.cols.str(s) === undefined) this.touched.set(p, null);
    // one owner (nearly every slot): its numbers, without best()'s claim object and owner text
    else if (!this.more.has(s)) this.touched.set(p, wasOf(this.cols.get(s, IDENTITY), this.cols.get(s, ENDPOINT)));
    else {
      const b = this.best(s, p)!;
      this.touched.set(p, wasOf(b.identity, b.endpoint));
    }
  }

  /** `owner` no longer names `prefix`; what other owners say takes effect. */
  delete(addrOrPrefix: string, owner: string): void {
    const p = slotKey(addrOrPrefix);
    const s = this.slotOf(p);
    if (s === undefined) return;
    const held = this.cols.str(s);
    if (held === undefined) return;
    const m = this.more.get(s);
    const mine = held === ownerCode(p!, owner);
    if (!mine && !m?.has(owner)) return;
    this.touch(s, p!);
    if (mine) {
      // the next owner in order moves inline
      const next = m?.entries().next().value as [string, Claim] | undefined;
      if (next) {
        m!.delete(next[0]);
        this.setInline(s, p!, next[0], next[1]);
      } else this.cols.setStr(s, undefined);
    } else m!.delete(owner);
    if (m?.size === 0) this.more.delete(s);
  }

  /**
   * Sequence numbers only order the claims of one slot (best()), so each slot's claims are renumbered 1..k in
   * their order, and the next claim gets one more than the largest k: same winners, small numbers again. One
   * pass over the slots, once per `seqLimit` claims.
   */
  private renumber(): void {
    let top = 0;
    for (const [p, s] of [...this.hosts4.entries(), ...this.others.entries()]) {
      const inline = this.ownerAt(s, p);
      if (inline === undefined) continue;
      const m = this.more.get(s);
      const own = this.inlineClaim(s, inline);
      const claims: Claim[] = [own, ...(m?.values() ?? [])].sort((a, b) => a.seq - b.seq);
      claims.forEach((c, i) => (c.seq = i + 1));
      this.setInline(s, p, inline, own);
      top = Math.max(top, claims.length);
    }
    this.seq = top;
  }

  private slotOf(p: SlotKey | null): number | undefined {
    return p === null ? undefined : typeof p === 'number' ? this.hosts4.get(p) : this.others.get(p);
  }

  private inlineClaim(s: number, owner: string): Owned {
    const sk = this.cols.get(s, SEQ_KIND);
    return { owner, kind: KIND_OF[sk % 4]!, seq: Math.floor(sk / 4), identity: this.cols.get(s, IDENTITY), endpoint: this.cols.get(s, ENDPOINT) };
  }

  /** Slot `s`'s (key `p`'s) inline owner, or undefined when it has none. */
  private ownerAt(s: number, p: SlotKey): string | undefined {
    const o = this.cols.str(s);
    return typeof o === 'number' ? shortIPv4Form(o, p as number) : o;
  }

  private setInline(s: number, p: SlotKey, owner: string, c: Claim): void {
    this.cols.setStr(s, ownerCode(p, owner));
    this.cols.set(s, IDENTITY, c.identity);
    this.cols.set(s, ENDPOINT, c.endpoint);
    this.cols.set(s, SEQ_KIND, c.seq * 4 + OWNER_PRECEDENCE[c.kind]);
  }

  /** The winning claim of a slot with owners. */
  private best(s: number, p: SlotKey): Owned | undefined {
    const inline = this.ownerAt(s, p);
    if (inline === undefined) return undefined;
    let best = this.inlineClaim(s, inline);
    for (const [owner, c] of this.more.get(s) ?? []) {
      if (OWNER_PRECEDENCE[c.kind] > OWNER_PRECEDENCE[best.kind] || (OWNER_PRECEDENCE[c.kind] === OWNER_PRECEDENCE[best.kind] && c.seq > best.seq)) best = { owner, ...c };
    }
    return best;
  }

  /** The value that wins for `prefix` now (not necessarily taken yet). */
  get(addrOrPrefix: string): (IpcacheValue & { kind: IpcacheOwnerKind; owner: string }) | undefined {
    const p = slotKey(addrOrPrefix);
    const s = this.slotOf(p);
    const best = s === undefined ? undefined : this.best(s, p!);
    return best ? { identity: best.identity, endpoint: best.endpoint, kind: best.kind, owner: best.owner } : undefined;
  }

  /** Owners of `prefix`, in the order they came (for status and tests). */
  ownersOf(addrOrPrefix: string): Array<{ owner: string; kind: IpcacheOwnerKind }> {
    const p = slotKey(addrOrPrefix);
    const s = this.slotOf(p);
    const inline = s === undefined ? undefined : this.ownerAt(s, p!);
    if (inline === undefined) return [];
    return [{ owner: inline, kind: this.inlineClaim(s!, inline).kind }, ...[...(this.more.get(s!) ?? [])].map(([owner, c]) => ({ owner, kind: c.kind }))];
  }

  /** Owners of `prefix` of kind `kind`, in the order they came. */
  ownersOfKind(addrOrPrefix: string, kind: IpcacheOwnerKind): string[] {
    const p = slotKey(addrOrPrefix);
    const s = this.slotOf(p);
    const inline = s === undefined ? undefined : this.ownerAt(s, p!);
    if (inline === undefined) return [];
    const out = this.cols.get(s!, SEQ_KIND) % 4 === OWNER_PRECEDENCE[kind] ? [inline] : [];
    for (const [owner, c] of this.more.get(s!) ?? []) if (c.kind === kind) out.push(owner);
    return out;
  }

  /** Prefixes the data path holds. */
  get size(): number {
    return this.installedCount;
  }

  /** What changed in the winning values since the last call: prefix -> value, or null to delete. */
  takeChanges(): Map<string, IpcacheValue | null> {
    const out = new Map<string, IpcacheValue | null>();
    for (const [p, was] of this.touched) {
      const s = this.slotOf(p);
      if (s === undefined) continue;
      const want = this.best(s, p);
      const have = was !== null;
      const wasIdentity = typeof was === 'number' ? was : was?.identity;
      const wasEndpoint = typeof was === 'number' ? 0 : was?.endpoint;
      if (!want) {
        if (typeof p === 'number') this.hosts4.delete(p); // no owner left: the slot goes with the data path's entry
        else this.others.delete(p);
        this.more.delete(s); // (empty already: further owners move inline first)
        this.cols.release(s);
        if (have) {
          this.installedCount--;
          out.set(fullPrefix(p), null);
        }
        continue;
      }
      if (have && wasIdentity === want.identity && wasEndpoint === want.endpoint) continue;
      if (!have) this.installedCount++;
      out.set(fullPrefix(p), { identity: want.identity, endpoint: want.endpoint });
    }
    this.touched.clear();
    return out;
  }
}
