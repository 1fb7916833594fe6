/**
 * Reads a held-back endpoint's record again when its turn comes (endpointquota.ts: past HELD_VALUES_PER_NODE held
 * back per node, admission keeps their keys only). One point read per key asked for, handed to the watcher that
 * holds the key (ListWatcher.offerAgain), which delivers it through the sinks as its own value when it is the value
 * it holds; a value changed or deleted since comes through the watch itself (with every check), so a read never
 * puts back an older value than the watch's. A read that failed is tried again (1 s, doubling to 30 s) while the
 * watcher still holds the key, at most READ_TRIES times; past them the key waits for its next change (logged).
 * Bound: the keys asked for at once are at most the room the over-bound nodes have (EndpointQuota.next).
 */
import { textKV } from '../controlplane/etcdwatch.js';
import type { KV, ListWatcher } from '../controlplane/kvstore.js';
import { doublingDelay } from '../controlplane/backoff.js';
import type { Logger } from '../log.js';

/** Reads of one key before it is left to its next change (~4 minutes of retries). */
export const READ_TRIES = 10;
const RETRY = { first: 1000, max: 30_000 };

/** How a key's current value is read: undefined when the key is not there (or not text). */
export type ReadKey = (key: string) => Promise<KV | undefined>;

/** The etcd read behind ReadKey: a point get, its create revision with it. */
export function etcdReadKey(get: (key: string) => { exec(): Promise<{ kvs: Array<{ key: Buffer; value: Buffer; create_revision: string }> }> }): ReadKey {
  return async (key) => {
    const kv = (await get(key).exec()).kvs[0];
    const t = kv && textKV(kv, undefined);
    return t ? { key: t.key, value: t.value, ...(t.createRevision ? { createRevision: t.createRevision } : {}) } : undefined;
  };
}

/**
 * EndpointQuota.refetch for the agent: `form` is the key as admission holds it (Admission.endpointKeys: its text by
 * `text`), read by `read` and handed to the one of `watchers` whose prefix holds it.
 */
export function refetcher(read: ReadKey, watchers: readonly ListWatcher[], text: (form: string) => string, log: Logger): (form: string) => void {
  const fetch = (key: string, tries: number): void => {
    const w = watchers.find((x) => key.startsWith(x.prefix));
    if (!w || w.createRevision(key) === undefined) return; // not held: its delete came, nothing to offer
    read(key).then(
      (kv) => void (kv && w.offerAgain(kv)),
      (err: Error) => {
        if (tries + 1 >= READ_TRIES) return log.warn({ key, err: err.message }, 'held-back endpoint not read again: it waits for its next change');
        setTimeout(() => fetch(key, tries + 1), doublingDelay(tries, RETRY)).unref();
      },
    );
  };
  return (form) => fetch(text(form), 0);
}
