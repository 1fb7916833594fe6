/**
 * What ListWatcher (kvstore.ts) hands a prefix's records to, and `decoded`, the
 * sink that decodes them before a sink of records sees them.
 */
import type { CompactKeys } from './compactkeys.js';
import type { Rejected } from './etcdwatch.js';
import { tryDecode, type Codec } from './records/codec.js';
import type { Rejections } from './records/rejections.js';
import { refusedInto } from './refusedinto.js';

export interface ListWatchSink {
  /**
   * Returns `false` when the value was refused (counted by the sink) and the sink kept the key's previous value
   * (anything else: taken). ListWatcher then removes that previous value if the refused one is of a new
   * incarnation of the key (deleted in between). `reborn`: the value is of such a new incarnation (the key was
   * deleted and created again since the value last handed over, maybe unseen in a gap that forced a relist).
   * With `forms`, `key` is the key's form (upsert and remove alike) and `text` the key's text.
   */
  upsert(key: string, value: string, reborn?: boolean, text?: string): unknown;
  remove(key: string): void;
  /** Called after every complete (re)list: the sink now mirrors the prefix. */
  synced?(): void;
  /**
   * The store refused a record alone (a key, then in hex, or a value that is not valid UTF-8): the sink counts it
   * with its own refusals (decoded() does, through refusedInto); a sink without it has ListWatcher log it. Once
   * per refused write on the watch, once per key and incarnation across relists. Always the key's text.
   */
  refused?: Rejected;
  /**
   * The sink holds keys in these forms (compactkeys.ts, issue 16: an endpoint key's ~100 B of text held as ~32 B):
   * ListWatcher holds each key it mirrors as its form, acquired when the key arrives and released after the
   * sink's remove, and hands the sink the form instead of the text; `forms.full(form)` gives the text back.
   */
  forms?: CompactKeys;
}

/** A sink of decoded records. */
export interface RecordSink<T> {
  /**
   * `false`: refused; `reborn`: of a new incarnation of the key (both as ListWatchSink.upsert). `text`: the key's
   * text (`key` itself unless the key is held in a compact form: decoded with `forms`).
   */
  upsert(key: string, value: T, reborn?: boolean, text?: string): unknown;
  remove(key: string): void;
  synced?(): void;
}

/**
 * Decodes every value with `codec` before `sink` sees it. A value that does
 * not decode is rejected alone (logged, counted in `rejections` under the
 * cluster its key names) and the sink keeps the key's previous good value
 * (upsert answers false: ListWatcher removes that value if the key was
 * deleted in between); `origin` names that cluster from the key's text. `reborn`
 * goes through to `sink` with the decoded value: a sink that refuses a value
 * of its own accord must know whether the value it keeps is of a deleted key.
 * With `forms` the sink holds keys in those forms (ListWatchSink.forms): the codec
 * checks the key's text, the sink gets the form and the text.
 */
export function decoded<T>(codec: Codec<T>, sink: RecordSink<T>, rejections: Rejections, origin: (key: string) => string = () => '', forms?: CompactKeys): ListWatchSink {
  return {
    upsert: (key, value, reborn, given) => {
      const text = given ?? (forms ? forms.full(key) : key);
      const r = tryDecode(codec, text, value);
      if (r.ok) return sink.upsert(key, r.value, reborn, text);
      rejections.add(r.error, origin(text));
      return false;
    },
    remove: (key) => sink.remove(key),
    ...(sink.synced ? { synced: () => sink.synced!() } : {}),
    refused: refusedInto(rejections, codec.type, origin),
    ...(forms ? { forms } : {}),
  };
}
