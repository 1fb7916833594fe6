/**
 * Keys ending in an IP address held in a compact form (issue 16, bench/memory.ts):
 * the key's text up to and including its last '/' (its *base*: for an endpoint key
 * `wiremesh/cache/ip/v2/<cluster>/<node>/`, shared by the ~10–30 endpoints of a
 * node) held once and named by a small index, the address as its bytes. A base
 * under one of CompactKeysOptions.prefixes is held as that prefix's index in the
 * list and its tail (the node id), not as its text. An 80-character
 * endpoint key is ~104 B of heap per copy; its compact form is a one-byte string
 * of 8 characters (IPv4: 24 B, the least a V8 string costs) or 20 (IPv6: 40 B),
 * 11 or 23 once a process has made 2^24 bases.
 *
 * Forms (all one-byte strings; which one is read from the first character):
 * - compact: SHORT and the base's index in 3 characters of 8 bits (little-endian)
 *   when it is below 2^24, else MARK and the index in 6 characters; then the
 *   address's 4 or 16 bytes, one per character. Taken when the text after the
 *   last '/' is an address in its canonical text (formatIP(parseIP(t)) === t), so
 *   that text and bytes are one-to-one. A base has one index, so one length of
 *   form: a key has one compact form.
 * - escaped: ESCAPE then the key, for a key that does not compact and starts
 *   with a character ≤ ESCAPE (no etcd key under a wiremesh prefix does).
 * - the key itself otherwise.
 * The three never meet, and each gives back its key (`full`): no two keys share a
 * form. A base's index is never reused (a counter up to 2^48), so a compact key
 * kept past its release names no other base: `full` throws on it (a holder's bug,
 * loud rather than a key misread).
 *
 * Bounds: one base per distinct base among the held keys (its text, or its tail
 * under a prefix, see CompactKeysOptions; a Map entry by that string, a slot in
 * four columns and in a U32Map by index), released with its last key; the
 * columns and the free list keep their most slots (40 B each, for reuse: at most
 * the most bases held at once). Keys a remote chooses cannot
 * make it collide. Past FREE_BASES bases, a new one is made only while the keys
 * held average SHARE per base (acquire), so bases stay ≤ FREE_BASES + 1/SHARE of
 * the keys held: one base per key (every endpoint on a node of its own) costs at
 * most ~25 B per key more than the keys' texts (docs/security.md).
 *
 * Holders count themselves: every `acquire` is paired with one `release` of the
 * form it returned. `find` answers for a held key without counting or interning.
 */
import { formatIP, parseIP } from '../net/ip.js';
import { internName } from './records/intern.js';
import { U32Map } from '../net/u32map.js';

/** The compact form with a 3-character index (bases below 2^24). */
const SHORT = '\u0000';
const MARK = '\u0001';
const ESCAPE = '\u0002';
/**
 * Characters of a base's index: 3 × 8 bits while the index is below 2^24 (a process makes a base per node name
 * it sees come back after all its keys went: 2^24 is years of honest churn, and a remote that forces more only
 * brings its forms back to 11 characters, what every form took before), then 6, past any count of bases a process
 * sees (2^48). An IPv4 form of 8 characters costs 24 B of heap, of 11 32 B: −8 B per endpoint (issue 16).
 */
const SHORT_CHARS = 3;
const INDEX_CHARS = 6;
const SHORT_LIMIT = 2 ** (8 * SHORT_CHARS);
/** Bases held before new ones need SHARE compactable keys held per base on average (below: a new base's keys stay plain). */
const FREE_BASES = 64;
const SHARE = 4;

/** The plain form: the key itself, escaped when it starts with a character a compact or escaped form starts with. */
const plain = (key: string): string => (key.length > 0 && key.charCodeAt(0) <= ESCAPE.charCodeAt(0) ? ESCAPE + key : key);

/**
 * The address after a key's last '/' (at `slash`) when it is in canonical text (a dotted quad without leading
 * zeros, or what formatIP gives for IPv6): an IPv4 address as its 32-bit number, an IPv6 one as its 16 bytes;
 * else undefined. A dotted quad is scanned here, without a Buffer: this runs once or twice per watched record.
 */
function addressOf(key: string, slash: number): number | Buffer | undefined {
  const n = key.length - slash - 1;
  if (n >= 7 && n <= 15) {
    let out = 0;
    let i = slash + 1;
    for (let o = 0; o < 4; o++) {
      if (o > 0 && key.charCodeAt(i++) !== 46) return v6(key, slash); // '.'
      const start = i;
      let v = 0;
      for (let c = key.charCodeAt(i); c >= 48 && c <= 57 && i - start < 3; c = key.charCodeAt(++i)) v = v * 10 + (c - 48);
      if (i === start || v > 255 || (i - start > 1 && key.charCodeAt(start) === 48)) return v6(key, slash);
      out = out * 256 + v;
    }
    if (i === key.length) return out;
  }
  return v6(key, slash);
}

function v6(key: string, slash: number): Buffer | undefined {
  const text = key.slice(slash + 1);
  if (text.length < 2 || text.length > 45 || !text.includes(':')) return undefined;
  const b = parseIP(text);
  return b && b.length === 16 && formatIP(b) === text ? b : undefined;
}

/** SHORT and the index's 3 characters, or MARK and its 6, then the address's 4 or 16: one flat string (one allocation). */
function encode(index: number, addr: number | Buffer): string {
  const lo = index % SHORT_LIMIT, hi = Math.floor(index / SHORT_LIMIT);
  const i0 = lo & 255, i1 = (lo >>> 8) & 255, i2 = lo >>> 16;
  if (hi === 0) {
    if (typeof addr === 'number') return String.fromCharCode(0, i0, i1, i2, addr >>> 24, (addr >>> 16) & 255, (addr >>> 8) & 255, addr & 255);
    return String.fromCharCode(0, i0, i1, i2, ...addr);
  }
  const i3 = hi & 255, i4 = (hi >>> 8) & 255, i5 = hi >>> 16;
  if (typeof addr === 'number') return String.fromCharCode(1, i0, i1, i2, i3, i4, i5, addr >>> 24, (addr >>> 16) & 255, (addr >>> 8) & 255, addr & 255);
  return String.fromCharCode(1, i0, i1, i2, i3, i4, i5, ...addr);
}

/** Characters of a compact form before its address: its mark and its index. */
const headOf = (compact: string): number => 1 + (compact[0] === SHORT ? SHORT_CHARS : INDEX_CHARS);

function indexOf(compact: string): number {
  let v = 0;
  for (let i = headOf(compact) - 1; i >= 1; i--) v = v * 256 + compact.charCodeAt(i);
  return v;
}

/**
 * Whether `form` is a short IPv4 compact form: 8 one-byte characters, SHORT first (then the base's index in 3, the
 * address's 4). Such a form is exactly two numbers, formBase and formAddress, and shortIPv4Form(base, address)
 * gives it back character for character: so a table of forms (digesttable.ts) may hold the two numbers instead.
 * Any 8-character string of one-byte characters starting with SHORT passes (the layout, not a held base, is
 * checked: no plain form CompactKeys makes is such a string, see `plain`; a raw key given to a table directly
 * may be, and is read back exactly all the same). No allocation.
 */
export function isShortIPv4Form(form: string): boolean {
  if (form.length !== 1 + SHORT_CHARS + 4 || form.charCodeAt(0) !== 0) return false;
  for (let i = 1; i < form.length; i++) if (form.charCodeAt(i) > 255) return false;
  return true;
}

/** A short IPv4 form's base index (in [0, 2^24); isShortIPv4Form first). No allocation. */
export const formBase = (form: string): number => form.charCodeAt(1) | (form.charCodeAt(2) << 8) | (form.charCodeAt(3) << 16);

/** A short IPv4 form's address as its 32-bit number (in [0, 2^32); isShortIPv4Form first). No allocation. */
export const formAddress = (form: string): number =>
  ((form.charCodeAt(4) << 24) | (form.charCodeAt(5) << 16) | (form.charCodeAt(6) << 8) | form.charCodeAt(7)) >>> 0;

/** The short IPv4 form of base index `base` (in [0, 2^24)) and address `address` (a 32-bit number): 8 characters. */
export const shortIPv4Form = (base: number, address: number): string => encode(base, address >>> 0);

/** Whether a form is compact (SHORT or MARK first). */
const isCompact = (form: string): boolean => form[0] === SHORT || form[0] === MARK;

/** What a CompactKeys is made with. */
export interface CompactKeysOptions {
  /**
   * Texts a base may start with (endpoint keys' prefixes, keys.ts), tried in order: a base that starts with one and
   * is longer than it is held as that prefix's index in this list and its *tail*, the rest of its text without the
   * last '/' (for an endpoint key `<prefix><cluster>/<node>/`, the node id "cluster/node"), interned (internName),
   * so the base costs no string of its own when the process holds the same interned string anyway (EndpointStore's
   * and the peers' tables key the node by it): ~50–57 B less per base of 41 characters, s39. A base that is a
   * prefix exactly is held as its text, so `<prefix>` and `<prefix>/` (tail '') stay apart. Default none.
   */
  prefixes?: readonly string[];
  /** The first base's index (tests: start near 2^24, where forms grow to 11 characters); default 0. */
  firstIndex?: number;
}

/**
 * Bases are held in columns by slot (s37: 10–60 B per base less, measured, than an object each and a Map entry by
 * index), a slot reused once its base is released; a base's index is its own (never reused, see the file's
 * comment), found by a U32Map (below 2^32, every index a process makes in practice) or a Map past it.
 * A base's text is its prefix (`heads`: an index into the prefixes, -1 none) then its tail (`tails`), then '/' when
 * it has a prefix; with none the tail is the whole text. A text has one such split (the first prefix it starts
 * with and is longer than), so a base has one slot whichever way it is looked up.
 */
export class CompactKeys {
  private readonly prefixes: readonly string[];
  /** Slots by tail, one Map per prefix and, last, one for bases without a prefix (by their whole text). */
  private readonly byTail: Map<string, number>[];
  /** Slots by base index: below 2^32 in a U32Map, else (past 4 billion bases made) in a Map. */
  private readonly byIndex = new U32Map();
  private readonly byLargeIndex = new Map<number, number>();
  /** Per slot: the base's prefix (-1: none) and tail (undefined: a free slot), its index, its count of held forms. */
  private readonly heads: number[] = [];
  private readonly tails: Array<string | undefined> = [];
  private readonly indices: number[] = [];
  private readonly refs: number[] = [];
  private readonly freeSlots: number[] = [];
  private nextIndex: number;
  /** Compact forms held (every base's refs), and plain forms held of keys that have a compact one (the guard's). */
  private compactHeld = 0;
  private plainCompactable = 0;
  /** The slot of the base last looked up or acquired (lookup), -1 none: held (forgotten when released). */
  private last = -1;

  constructor(opts: CompactKeysOptions = {}) {
    this.prefixes = [...(opts.prefixes ?? [])];
    this.byTail = Array.from({ length: this.prefixes.length + 1 }, () => new Map<string, number>());
    this.nextIndex = opts.firstIndex ?? 0;
  }

  /** Bases held (distinct key texts up to the last '/' among the held compact keys). */
  get bases(): number {
    let n = 0;
    for (const m of this.byTail) n += m.size;
    return n;
  }

  /**
   * `key`'s form, counted as held once more (one `release` of it per call). A key acquired twice may get two
   * forms (plain, then compact once its base is held), each reading back to it: a holder keeps the one it got.
   *
   * A base costs ~165 B with a 70-character text (s37, measured at 16,000 bases; ~190 B as an object with two Map
   * entries before), ~50–57 B less when it is held as a tail its process holds anyway (s39: a node id, whose string
   * EndpointStore's tables keep), a compact form ~32 B against ~104 B of text: a base pays for itself from ~2.3
   * keys. Keys a remote chooses could give every key a base of its own, so past
   * FREE_BASES a new base is made only while the keys held that have a compact form (compact, or kept plain by
   * this guard) number SHARE per base; else the key's form is plain (its text, as without this table). Bases are
   * then at most FREE_BASES + 1/SHARE of those keys: at worst (one compact key per base, the others plain) the
   * forms cost ~95 B per base, ≤ ~25 B per key, more than the keys' texts (docs/security.md). Counting the plain
   * keys too keeps 64 one-key bases (listed first) from turning compaction off for every later node.
   */
  acquire(key: string): string {
    const slash = key.lastIndexOf('/');
    const addr = slash < 0 ? undefined : addressOf(key, slash);
    if (addr === undefined) return plain(key);
    let b = this.lookup(key, slash);
    if (b < 0) {
      // every key held counts, the plain ones the guard kept too: else 64 bases of one (hostile) key each kept
      // every later key plain for good (review of s13mem #4)
      const bases = this.bases;
      if (bases >= FREE_BASES && this.compactHeld + this.plainCompactable < SHARE * bases) {
        this.plainCompactable++;
        return plain(key);
      }
      if (this.nextIndex >= 2 ** (8 * INDEX_CHARS)) throw new Error('compact keys: base index space exhausted');
      b = this.freeSlots.pop() ?? this.tails.length;
      const h = this.prefixOf(key, slash);
      const tail = internName(this.tailOf(key, slash, h));
      const index = this.nextIndex++;
      this.heads[b] = h;
      this.tails[b] = tail;
      this.indices[b] = index;
      this.refs[b] = 0;
      this.byHead(h).set(tail, b);
      if (index < 2 ** 32) this.byIndex.set(index, b);
      else this.byLargeIndex.set(index, b);
    }
    this.refs[b]!++;
    this.compactHeld++;
    this.last = b;
    return encode(this.indices[b]!, addr);
  }

  /** The form `key` is held in, by `has` (does a holder hold this form?), or undefined: compact, else plain. */
  heldForm(key: string, has: (form: string) => boolean): string | undefined {
    const f = this.find(key);
    if (f !== undefined && has(f)) return f;
    if (this.plainCompactable === 0 || f === plain(key)) return undefined;
    const p = plain(key);
    return has(p) ? p : undefined;
  }

  /**
   * The base of `key` (its text up to `slash`), if held. The last base looked up is tried first without a copy
   * of the text: a list hands keys in key order, a node's endpoints one after the other.
   */
  private lookup(key: string, slash: number): number {
    const l = this.last;
    if (l >= 0 && this.isBaseOf(l, key, slash)) return l;
    const h = this.prefixOf(key, slash);
    const b = this.byHead(h).get(this.tailOf(key, slash, h));
    if (b === undefined) return -1;
    this.last = b;
    return b;
  }

  /**
   * The first prefix the text before `slash` starts with, -1 none. A base that is a prefix exactly has none: its
   * tail would be '' as the base `<prefix>/`'s is (two bases, one tail).
   */
  private prefixOf(key: string, slash: number): number {
    const ps = this.prefixes;
    for (let i = 0; i < ps.length; i++) if (ps[i]!.length <= slash && key.startsWith(ps[i]!)) return i;
    return -1;
  }

  /** The tail of `key`'s base (its text to `slash`) under prefix `h` (prefixOf); the whole text under none. */
  private tailOf(key: string, slash: number, h: number): string {
    return h < 0 ? key.slice(0, slash + 1) : key.slice(this.prefixes[h]!.length, slash);
  }

  /** The Map of slots by tail for prefix `h` (-1: the bases without one). */
  private byHead(h: number): Map<string, number> {
    return this.byTail[h < 0 ? this.prefixes.length : h]!;
  }

  /** Whether slot `b`'s base is `key`'s text up to and including `slash`, without a copy of either. */
  private isBaseOf(b: number, key: string, slash: number): boolean {
    const h = this.heads[b]!, tail = this.tails[b]!;
    if (h < 0) return tail.length === slash + 1 && key.startsWith(tail);
    const p = this.prefixes[h]!;
    // (a text has one split: one that starts with p has no slot without a prefix, nor one under a later prefix)
    return p.length + tail.length === slash && key.startsWith(p) && key.startsWith(tail, p.length);
  }

  /** Slot `b`'s base text (made anew when it has a prefix: the prefix, its tail and '/'). */
  private textOf(b: number): string {
    const h = this.heads[b]!;
    return h < 0 ? this.tails[b]! : `${this.prefixes[h]}${this.tails[b]}/`;
  }

  /**
   * The form `acquire` gives `key` now when its base is held (compact) or it has no compact form (plain); else
   * undefined. Nothing counted or interned. A key held in a plain form while it has a compact one: `heldForm`.
   */
  find(key: string): string | undefined {
    const slash = key.lastIndexOf('/');
    const addr = slash < 0 ? undefined : addressOf(key, slash);
    if (addr === undefined) return plain(key);
    const b = this.lookup(key, slash);
    return b < 0 ? undefined : encode(this.indices[b]!, addr);
  }

  /** Whether a plain form's key has a compact form (a key the guard kept plain). */
  private compactable(form: string): boolean {
    const key = this.full(form);
    const slash = key.lastIndexOf('/');
    return slash >= 0 && addressOf(key, slash) !== undefined;
  }

  /**
   * The key a form stands for (a new string per call for a compact form). Throws on a compact form whose base this
   * table does not hold (released: a holder kept it too long; or a long form of a short index): `holds` tells first.
   */
  full(form: string): string {
    if (form.length === 0 || form.charCodeAt(0) > ESCAPE.charCodeAt(0)) return form;
    if (form[0] === ESCAPE) return form.slice(1);
    const text = this.textOf(this.slotOf(form));
    const at = headOf(form);
    const byte = (i: number) => form.charCodeAt(at + i);
    if (form.length === at + 4) return `${text}${byte(0)}.${byte(1)}.${byte(2)}.${byte(3)}`;
    const addr = Buffer.alloc(16);
    for (let i = 0; i < 16; i++) addr[i] = byte(i);
    return text + formatIP(addr);
  }

  /** The slot of a compact form's base, or -1 when this table holds none of its index (released, or never made). */
  private heldSlot(form: string): number {
    const i = indexOf(form);
    // a long form of an index the short form holds is none this table made (one form per key): refused as well
    if (form[0] === MARK && i < SHORT_LIMIT) return -1;
    return (i < 2 ** 32 ? this.byIndex.get(i) : this.byLargeIndex.get(i)) ?? -1;
  }

  /** heldSlot, or a throw: a holder's bug (a form kept past its release, or not made here), loud rather than misread. */
  private slotOf(form: string): number {
    const b = this.heldSlot(form);
    if (b >= 0) return b;
    if (form[0] === MARK && indexOf(form) < SHORT_LIMIT) throw new Error('compact keys: a long form of a short index was read');
    throw new Error('compact keys: a released key was read');
  }

  /**
   * The key's text up to and including its last '/' for a compact form (for a base under a prefix, a new string on
   * every call: `tail` reads it without one), the key itself for any other form. O(1) but for that string. Throws
   * as `full` on a compact form whose base this table does not hold (`holds` tells first).
   */
  base(form: string): string {
    return isCompact(form) ? this.textOf(this.slotOf(form)) : this.full(form);
  }

  /**
   * For a compact form whose base is under one of the prefixes (starts with it and is longer): the base's tail (its
   * text after the prefix, without the last '/': an endpoint key's node id; '' for the base `<prefix>/`), the
   * interned string, no copy made (what admission reads a node from, several times per record); undefined for any
   * other form (base(form) then). O(1). Throws as `full` on a compact form whose base this table does not hold.
   */
  tail(form: string): string | undefined {
    if (!isCompact(form)) return undefined;
    const b = this.slotOf(form);
    return this.heads[b]! < 0 ? undefined : this.tails[b];
  }

  /**
   * Whether `form` is one this table can read: true for every form that is not compact; false only for a compact
   * form whose base it does not hold (released, or a long form of a short index), as a reader asked about a form
   * another holder kept too long (a leftover ipcache owner after a change threw midway) must learn, where full,
   * base and tail would throw. O(1), never throws.
   */
  holds(form: string): boolean {
    return !isCompact(form) || this.heldSlot(form) >= 0;
  }

  /** One holder of `form` (from `acquire`) lets it go; its base goes with its last key. */
  release(form: string): void {
    if (!isCompact(form)) {
      if (this.plainCompactable > 0 && this.compactable(form)) this.plainCompactable--;
      return;
    }
    const b = this.slotOf(form);
    this.compactHeld--;
    if (--this.refs[b]! > 0) return;
    if (this.last === b) this.last = -1;
    const index = this.indices[b]!;
    if (index < 2 ** 32) this.byIndex.delete(index);
    else this.byLargeIndex.delete(index);
    this.byHead(this.heads[b]!).delete(this.tails[b]!);
    this.tails[b] = undefined; // (the tail or text not kept alive by a free slot)
    this.freeSlots.push(b);
  }
}
