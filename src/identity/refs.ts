/**
 * The identities a cluster's nodes reference (identity-refs/v2/<cluster>/<node>/<id>), as the identity collector
 * reads them: a page at a time, with a bound per node. A node may write any number of keys under its own prefix
 * (RBAC grants it the prefix); before, the collector read all of them at once, so one node with its credentials
 * could make every sweep read and hold as many keys as etcd's quota allows. Now each node counts for at most
 * `maxPerNode` keys: past them the read skips to the next node's keys, and the rest of that node's references
 * are refused (reported once per node, the first key refused), so they keep no identity alive.
 *
 * Why 2 × the endpoint bound (DEFAULT_MAX_IDENTITY_REFS_PER_NODE): a node references one identity per label set of
 * its endpoints, so at most as many as it publishes endpoints (≤ admission.maxEndpointsPerNode, 1024 by default:
 * the agent refuses to publish more, checkPublishBound); a relabel references the new identity before it releases
 * the old one (one at a time: the agent serializes its endpoint changes), and a release that failed leaves its
 * reference until the node's lease ends. Twice the bound leaves that room; an honest node never reaches it, so the
 * collector never frees an identity an honest node references. An operator who raises maxEndpointsPerNode raises
 * kvstoremesh's --max-identity-refs-per-node with it.
 *
 * Cost: a sweep reads each node's keys up to its maxPerNode + 1st, and at most one page (REF_PAGE keys) more for
 * each node over the bound (the rest of the page that found it over), however many keys it wrote; one page in
 * memory at a time; it keeps only the referenced ids among the listed identities (≤ the identities listed) and
 * one key per node over the bound.
 */
import { DEFAULT_MAX_ENDPOINTS_PER_NODE } from '../agent/endpointquota.js';
import { identityRefsPrefix } from '../controlplane/keys.js';

/** Identity references a node counts for, by default (kvstoremesh --max-identity-refs-per-node): see above. */
export const DEFAULT_MAX_IDENTITY_REFS_PER_NODE = 2 * DEFAULT_MAX_ENDPOINTS_PER_NODE;
/** Keys per page of the read (one etcd range call each). */
export const REF_PAGE = 1024;

/**
 * One page of the keys under `prefix`, in byte order, from `from` on (inclusive), at most `limit`. Keys and `from`
 * are byte strings (one char per byte, 'latin1'): a key that is not valid UTF-8 is still counted and paged past.
 */
export type KeyPage = (prefix: string, from: string, limit: number) => Promise<string[]>;

/** What a read of a cluster's references found. */
export interface RefsRead {
  /** The ids among `listed` that some node references within its bound. */
  referenced: Set<string>;
  /** Nodes over the bound (byte string as the keys) -> the first of their keys refused (the rest were not read). */
  over: Map<string, string>;
}

/**
 * Reads the references of `cluster` through `page` (see the header). `listed`: the identities the sweep listed (ids
 * in decimal); a reference to any other counts toward its node's bound but is not kept. Rejects when the store
 * hands keys out of order or outside the range asked (a store that ignores `from` would page forever).
 */
export async function readRefs(page: KeyPage, cluster: string, listed: ReadonlySet<string>, maxPerNode: number): Promise<RefsRead> {
  const prefix = identityRefsPrefix(cluster);
  const referenced = new Set<string>();
  const over = new Map<string, string>();
  let node: string | undefined;
  let count = 0;
  let from = prefix;
  for (;;) {
    const keys = await page(prefix, from, REF_PAGE);
    let next: string | undefined;
    let last = from;
    for (const [i, key] of keys.entries()) {
      // each key after the one before (the first may be `from` itself) and under the prefix
      if (!(key > last || (i === 0 && key === from)) || !key.startsWith(prefix)) throw new Error(`the store listed ${JSON.stringify(key)} out of order or outside ${prefix}`);
      last = key;
      const slash = key.indexOf('/', prefix.length);
      if (slash < 0) continue; // names no node: references nothing (no node may write there)
      const name = key.slice(prefix.length, slash);
      if (name !== node) [node, count] = [name, 0]; // one node's keys are together: they share "<node>/"
      if (++count > maxPerNode) {
        over.set(name, key);
        next = `${prefix}${name}0`; // '0' follows '/': the first key past every "<node>/..." key
        break;
      }
      const id = key.slice(slash + 1);
      if (listed.has(id)) referenced.add(id);
    }
    if (next === undefined) {
      if (keys.length < REF_PAGE) return { referenced, over };
      next = `${last}\0`; // the least key after the page's last
    }
    from = next;
  }
}
