/** Where a state record lives: its cluster and name, from a state/ or cache/ key. */
import { cachePrefix, splitClusterName, statePrefix, type StateType } from '../keys.js';

export interface Location {
  cluster: string;
  name: string;
  /** Under cache/: a remote cluster's record, copied by kvstoremesh. */
  cached: boolean;
}

export function stateLocation(type: StateType, key: string): Location | null {
  const s = splitClusterName(statePrefix(type), key);
  if (s) return { ...s, cached: false };
  const c = splitClusterName(cachePrefix(type), key);
  return c ? { ...c, cached: true } : null;
}

/** "the key says X, the value says Y", or undefined when they agree. */
export function mismatch(field: string, inKey: string | undefined, inValue: string): string | undefined {
  if (inKey === undefined) return `key is not a ${field} key`;
  return inKey === inValue ? undefined : `the key names ${field} "${inKey}", the value "${inValue}"`;
}
