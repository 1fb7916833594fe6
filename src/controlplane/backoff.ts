/**
 * The retry pause shared by kvstoremesh's and ListWatcher's retries (leases, replication starts, purges, lists and
 * relists): `first` ms after the first failure of a row, doubled per further failure, at most `max` ms.
 */

/** The pause (ms) after `failures` earlier failures in a row (0: the first retry waits `first`). */
export function doublingDelay(failures: number, o: { first: number; max: number }): number {
  // 2 ** 30 keeps the product finite whatever the count (a remote failing for years)
  return Math.min(o.first * 2 ** Math.min(failures, 30), o.max);
}
