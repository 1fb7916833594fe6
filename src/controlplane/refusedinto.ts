/** How a store's refusals of single records (not valid UTF-8) are counted with a decoder's. */
import { KEY_NOT_UTF8, type Rejected } from './etcdwatch.js';
import { RecordError, type RecordType } from './records/codec.js';
import type { Rejections } from './records/rejections.js';

/**
 * A store's refusals (list(prefix, rejected), a watch's: bytes that are not valid UTF-8) counted in `rejections` as
 * records of `type` from `origin` (or the cluster `origin(key)` names), as a decoder's refusals are (logged with key
 * and reason, in metrics and status): a key that is not text is refused for its key, from origin "" when named by
 * the key (its hex names no cluster, and one label per such key would be unbounded), a value that is not text as
 * not JSON (JSON text is UTF-8).
 */
export function refusedInto(rejections: Pick<Rejections, 'add'>, type: RecordType, origin: string | ((key: string) => string)): Rejected {
  return (key, reason) => {
    const binaryKey = reason === KEY_NOT_UTF8;
    const from = typeof origin === 'string' ? origin : binaryKey ? '' : origin(key);
    rejections.add(new RecordError(type, key, binaryKey ? 'key' : 'not-json', reason), from);
  };
}
