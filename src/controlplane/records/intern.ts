/**
 * One shared copy of what many decoded records repeat: label sets, container
 * port lists, names (cluster, node, namespace). 160k remote endpoints carry a
 * few hundred distinct label sets; holding one object per set instead of one
 * per record is most of what a decoded endpoint costs (docs/benchmarks.md,
 * "Agent memory per remote endpoint").
 *
 * Shared objects are frozen: a record is replaced, never mutated, and a
 * reader that tried would change every record sharing the object (it throws
 * instead). The pools hold their objects weakly: an entry lives as long as a
 * record uses it, so the pools are bounded by the records held, not by churn.
 */

/** Frozen objects by a text that identifies their content, held weakly. */
export class WeakPool<T extends object> {
  private readonly pool = new Map<string, WeakRef<T>>();
  private readonly reaper = new FinalizationRegistry<string>((key) => {
    if (this.pool.get(key)?.deref() === undefined) this.pool.delete(key);
    this.onReap?.(key);
  });

  /**
   * `onReap`: called with its key once per object the pool took when the registry's callback runs for it (some time
   * after it was collected; not promised to run at all), whether its entry is gone or re-pooled by then.
   */
  constructor(private readonly onReap?: (key: string) => void) {}

  /** The pooled object equal to `v` (identified by `key`), or `v` itself, frozen and pooled. */
  intern(key: string, v: T): T {
    const hit = this.pool.get(key)?.deref();
    if (hit) return hit;
    Object.freeze(v);
    this.pool.set(key, new WeakRef(v));
    this.reaper.register(v, key);
    return v;
  }

  /** The pooled object for `key`, or undefined (nothing pooled under it, or collected). */
  get(key: string): T | undefined {
    return this.pool.get(key)?.deref();
  }

  /** Distinct objects pooled (live or not yet reaped). */
  get size(): number {
    return this.pool.size;
  }
}

const labelSets = new WeakPool<Record<string, string>>();

/**
 * The shared, frozen label set with these entries in this order (order kept:
 * a record reads back exactly what it carried).
 */
export function internLabels<L extends Record<string, string>>(labels: L): L {
  return labelSets.intern(JSON.stringify(labels), labels) as L;
}

const lists = new WeakPool<object[]>();

/** A shared, frozen list of plain records (container ports): items frozen too. */
export function internList<I extends object>(items: I[]): I[] {
  return lists.intern(JSON.stringify(items), items.map((i) => Object.freeze(i))) as I[];
}

/**
 * The engine's one copy of a name: V8 keeps property names in its string
 * table (weak: a name nobody uses is collected), so using the text as a key
 * hands back that copy. Cluster, node and namespace names repeat in every
 * endpoint record; numeric texts ("123") are array indices and come back as
 * they are.
 */
export function internName(s: string): string {
  const o: Record<string, 0> = { [s]: 0 };
  for (const k in o) return k;
  return s;
}
