/** Where a state record lives: its cluster and name, from a state/ or cache/ key. */
import { cachePrefix, splitClusterName, STATE_TYPES, statePrefix, type StateType } from '../keys.js';

export interface Location {
  cluster: string;
  name: string;
  /** Under cache/: a remote cluster's record, copied by kvstoremesh. */
  cached: boolean;
}

// each type's two prefixes, built once: every decode of every record asks (kvstoremesh: each copied write)
const STATE = new Map<StateType, string>(STATE_TYPES.map((t) => [t, statePrefix(t)]));
const CACHE = new Map<StateType, string>(STATE_TYPES.map((t) => [t, cachePrefix(t)]));

export function stateLocation(type: StateType, key: string): Location | null {
  const s = splitClusterName(STATE.get(type)!, key);
  if (s) return { cluster: s.cluster, name: s.name, cached: false };
  const c = splitClusterName(CACHE.get(type)!, key);
  return c ? { cluster: c.cluster, name: c.name, cached: true } : null;
}

/** "the key says X, the value says Y", or undefined when they agree. */
export function mismatch(field: string, inKey: string | undefined, inValue: string): string | undefined {
  if (inKey === undefined) return `key is not a ${field} key`;
  return inKey === inValue ? undefined : `the key names ${field} "${inKey}", the value "${inValue}"`;
}
