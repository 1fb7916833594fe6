/**
 * A device's peers by id (device.ts: the data path's events and statistics name a peer by its id), held in one
 * array sorted by id instead of a Map (issue 16): 8 B per peer and the array's growth slack (~10 B on average),
 * where a Map entry cost ~29 B: ~19 B per node of every connected cluster less, ~2 B per remote endpoint at 10 per
 * node (docs/benchmarks.md s38).
 *
 * Ids are handed out increasing (device.ts nextPeerId, never reused), so an added peer goes last and the array
 * stays sorted without a sort. Cost: get O(log n) (a binary search: ~14 steps at 16,000 peers; it runs per
 * handshake event and per active peer of a timer tick, never per packet); add O(1) amortized; delete O(n) for
 * the elements after it (a memmove: ~10 µs at 16,000), O(1) for the last one (removeAllPeers goes from the end).
 */
export class PeersById<P extends { readonly id: number }> {
  private readonly list: P[] = [];

  get size(): number {
    return this.list.length;
  }

  /** Adds `peer`. Throws RangeError unless its id is above every id held (the order the search relies on). */
  add(peer: P): void {
    const last = this.list[this.list.length - 1];
    if (last !== undefined && !(peer.id > last.id)) throw new RangeError(`peer id ${peer.id} is not above ${last.id}`);
    this.list.push(peer);
  }

  /** The peer with id `id`, or undefined. */
  get(id: number): P | undefined {
    const i = this.indexOf(id);
    return i < 0 ? undefined : this.list[i];
  }

  /** Removes the peer with id `id`; false when none is held. */
  delete(id: number): boolean {
    const i = this.indexOf(id);
    if (i < 0) return false;
    if (i === this.list.length - 1) this.list.pop();
    else this.list.splice(i, 1);
    return true;
  }

  /** The position of id `id` in the list, or -1. */
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
