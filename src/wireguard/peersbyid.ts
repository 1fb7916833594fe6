/**
 * A device's peers by id (device.ts: the data path's events and statistics name a peer by its id), held in one
 * array sorted by id instead of a Map (issue 16): ~10 B a peer in all (a pointer and the array's growth room;
 * measured 11.3 B at 16,000 peers, docs/benchmarks.md s38), where a Map entry cost ~29 B: ~17 B per node of every
 * connected cluster less, ~1.7 B per remote endpoint at 10 per node.
 *
 * Ids are handed out increasing (device.ts nextPeerId, never reused), so an added peer goes last and the array
 * stays sorted without a sort. A delete leaves a tombstone holding the id (so the search still works) unless it
 * is the last element; the tombstones are swept out in one pass once they are half the array. So a run of deletes
 * in any order costs O(1) amortized each (the review of s38 measured a splice per delete: 1.3–18.6 s to remove
 * 150,000 peers oldest first), and the array holds at most twice the peers held, plus 16.
 * Cost: get O(log n) (a binary search: ~14 steps at 16,000 peers; it runs per handshake event and per active peer
 * of a timer tick, never per packet); add O(1) amortized.
 */
export class PeersById<P extends { readonly id: number }> {
  /** Peers and tombstones, by id ascending. */
  private list: Array<P | Gone> = [];
  private gone = 0;

  get size(): number {
    return this.list.length - this.gone;
  }

  /** Places in the array, peers and tombstones: for tests of the bound (≤ 2 × size + 16). */
  get slots(): number {
    return this.list.length;
  }

  /** Adds `peer`. Throws RangeError unless its id is a finite number above every id in the array (the order the search relies on). */
  add(peer: P): void {
    const last = this.list[this.list.length - 1];
    if (!Number.isFinite(peer.id) || (last !== undefined && !(peer.id > last.id))) throw new RangeError(`peer id ${peer.id} is not above ${last?.id ?? '-Infinity'}`);
    this.list.push(peer);
  }

  /** The peer with id `id`, or undefined. */
  get(id: number): P | undefined {
    const i = this.indexOf(id);
    const p = i < 0 ? undefined : this.list[i];
    return p instanceof Gone ? undefined : p;
  }

  /** Removes the peer with id `id`; false when none is held. */
  delete(id: number): boolean {
    const i = this.indexOf(id);
    if (i < 0 || this.list[i] instanceof Gone) return false;
    if (i === this.list.length - 1) {
      this.list.pop();
      // the tombstones now last go too (no live peer after them to find)
      while (this.list[this.list.length - 1] instanceof Gone) {
        this.list.pop();
        this.gone--;
      }
      return true;
    }
    this.list[i] = new Gone(id);
    if (++this.gone * 2 > this.list.length + 16) this.sweep();
    return true;
  }

  /** Drops every tombstone, the peers' order kept. */
  private sweep(): void {
    this.list = this.list.filter((p) => !(p instanceof Gone));
    this.gone = 0;
  }

  /** The position of id `id` (a peer's or a tombstone's), or -1. */
  private indexOf(id: number): number {
    const l = this.list;
    let lo = 0;
    let hi = l.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const m = l[mid]!.id;
      if (m === id) return mid;
      if (m < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}

/** A deleted peer's place: its id, so the binary search over the array still finds its neighbours. */
class Gone {
  constructor(readonly id: number) {}
}
