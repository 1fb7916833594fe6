/**
 * A small string-keyed table stored as one flat array `[k0, v0, k1, v1, …]`,
 * exactly sized, and as a Map once it holds more than SMALL_MAX entries (issue 16,
 * bench/memory.ts: admission keeps one per node, ~10 endpoints each, and a
 * 10-entry Map costs ~530 B against ~220 B for the array).
 *
 * The functions take a table and return the table to keep (a change may copy
 * the array or switch representation); `undefined` is the empty table. Keys
 * are compared as a Map compares strings; entries iterate in insertion order
 * (a changed value keeps its place), as a Map's do, in both representations.
 * Cost: O(SMALL_MAX) per lookup or change in the array form, O(1) in the Map form.
 */
export type KeyTable<V> = ReadonlyArray<string | V> | Map<string, V>;

/** Above this many entries the table is a Map; it goes back to an array at half. */
export const SMALL_MAX = 32;

function indexOf<V>(t: ReadonlyArray<string | V>, key: string): number {
  for (let i = 0; i < t.length; i += 2) if (t[i] === key) return i;
  return -1;
}

export function ktGet<V>(t: KeyTable<V> | undefined, key: string): V | undefined {
  if (t === undefined) return undefined;
  if (t instanceof Map) return t.get(key);
  const i = indexOf(t, key);
  return i < 0 ? undefined : (t[i + 1] as V);
}

/** The table with key set to value. */
export function ktSet<V>(t: KeyTable<V> | undefined, key: string, value: V): KeyTable<V> {
  if (t instanceof Map) return t.set(key, value);
  const arr = t ?? [];
  const i = indexOf(arr, key);
  if (i >= 0) {
    (arr as Array<string | V>)[i + 1] = value;
    return arr;
  }
  if (arr.length / 2 >= SMALL_MAX) return new Map<string, V>([...ktEntries(arr), [key, value]]);
  return arr.concat([key, value]); // concat allocates exactly: no growth slack
}

/** The table without key; undefined once empty. */
export function ktDelete<V>(t: KeyTable<V> | undefined, key: string): KeyTable<V> | undefined {
  if (t === undefined) return undefined;
  if (t instanceof Map) {
    t.delete(key);
    if (t.size > SMALL_MAX / 2) return t;
    const arr: Array<string | V> = [];
    for (const [k, v] of t) arr.push(k, v);
    return arr.length === 0 ? undefined : arr.slice(); // slice: exactly sized
  }
  const i = indexOf(t, key);
  if (i < 0) return t;
  if (t.length === 2) return undefined;
  return t.slice(0, i).concat(t.slice(i + 2));
}

export function ktSize<V>(t: KeyTable<V> | undefined): number {
  return t === undefined ? 0 : t instanceof Map ? t.size : t.length / 2;
}

export function* ktKeys<V>(t: KeyTable<V> | undefined): IterableIterator<string> {
  for (const [k] of ktEntries(t)) yield k;
}

export function* ktEntries<V>(t: KeyTable<V> | undefined): IterableIterator<[string, V]> {
  if (t === undefined) return;
  if (t instanceof Map) {
    yield* t;
    return;
  }
  for (let i = 0; i < t.length; i += 2) yield [t[i] as string, t[i + 1] as V];
}
