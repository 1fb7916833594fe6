/**
 * Admission's table for node, identity and relay records (issue 16): the candidate record of each key and the value
 * admitted for it in one Map, where they were two (one Map entry per node fewer: ~29 B per node at 16,000 nodes,
 * 16 × 1000). EndpointStore (endpointstore.ts) does the same for endpoints, filed by node.
 *
 * A key's value is
 * - the record itself when it is both the candidate and the admitted value (one object: `===`) and its `cluster` is
 *   the cluster it came from: an honest node's record once admitted;
 * - a `Held` otherwise: not admitted (yet), refused while an older value stays in force, admitted while its
 *   candidate is gone (between remove's two steps), a record that does not name its source (identities, relays), or
 *   an admitted value that is not the candidate (what Trust made of it).
 * A key with neither has no entry. Each view answers as its own Map did: the candidates' get gives
 * `{ cluster, rec }` (a new pair per read); both views iterate live, as a Map does (a change during it may be
 * seen or missed; a caller that changes the table meanwhile spreads the keys first).
 * Order: one Map, so both views follow the order keys first came (a key whose candidate and value both went and
 * came back goes last). The candidates' order is the one their own Map had (a key's entry goes only when both
 * its candidate and its value are gone, which a candidate's Map would have dropped at its delete too): admission's
 * recheck, where the first node admitted keeps what two claim, visits them in it. The admitted order is new:
 * the peers' pass reads it (PeerReconciler: which peer it programs first).
 */
import { internName } from '../controlplane/records/intern.js';

/** What admission asks of a candidate table. */
export interface Candidate<T> {
  cluster: string;
  rec: T;
}

/** A value that is not simply "this record, admitted" (`undefined`: none): here and in EndpointStore's tables. */
export class Held {
  constructor(
    readonly cluster: string,
    readonly cand: unknown,
    readonly admitted: unknown,
  ) {}
}

/** Whether `rec` names `cluster` as its own (node records do: their codec checks it against the key). */
const names = (rec: unknown, cluster: string): boolean => typeof rec === 'object' && rec !== null && (rec as { cluster?: unknown }).cluster === cluster;

export class AdmissionSlots<T = unknown> {
  private readonly m = new Map<string, unknown>();

  /** The candidate table's view (records by key, with their source cluster). */
  readonly candidates = {
    get: (key: string): Candidate<unknown> | undefined => candidateOf(this.m.get(key)),
    set: (key: string, cluster: string, rec: unknown): void => this.put(key, cluster, rec, admittedOf(this.m.get(key))),
    delete: (key: string): void => {
      const v = this.m.get(key);
      if (v !== undefined) this.put(key, '', undefined, admittedOf(v));
    },
    [Symbol.iterator]: (): IterableIterator<[string, Candidate<unknown>]> => this.entries(),
  };

  /** The admitted table's view (the value in force by key); its keys live, as a Map's. */
  readonly admitted = admittedView<T>(
    this.candidates.get,
    (key) => admittedOf(this.m.get(key)) as T | undefined,
    (key, cluster, cand, admitted) => this.put(key, cluster, cand, admitted),
    () => this.admittedKeys(),
  );

  private put(key: string, cluster: string, cand: unknown, admitted: unknown): void {
    if (cand === undefined && admitted === undefined) this.m.delete(key);
    else this.m.set(key, cand === admitted && names(cand, cluster) ? cand : new Held(internName(cluster), cand, admitted));
  }

  private *admittedKeys(): IterableIterator<string> {
    for (const [k, v] of this.m) if (admittedOf(v) !== undefined) yield k;
  }

  private *entries(): IterableIterator<[string, Candidate<unknown>]> {
    for (const [k, v] of this.m) {
      const c = candidateOf(v);
      if (c) yield [k, c];
    }
  }
}

function candidateOf(v: unknown): Candidate<unknown> | undefined {
  if (v === undefined) return undefined;
  if (!(v instanceof Held)) return { cluster: (v as { cluster: string }).cluster, rec: v };
  return v.cand === undefined ? undefined : { cluster: v.cluster, rec: v.cand };
}

const admittedOf = (v: unknown): unknown => (v instanceof Held ? v.admitted : v);

/**
 * An admitted table's view over a table that holds a key's candidate and admitted value together (`put` writes
 * both; both undefined: the key goes): setting or deleting the admitted value keeps the candidate as it is.
 */
export function admittedView<T>(
  candidate: (key: string) => Candidate<unknown> | undefined,
  get: (key: string) => T | undefined,
  put: (key: string, cluster: string, cand: unknown, admitted: unknown) => void,
  keys: () => Iterable<string>,
) {
  return {
    get,
    set: (key: string, rec: T): void => {
      const c = candidate(key);
      put(key, c?.cluster ?? '', c?.rec, rec);
    },
    delete: (key: string): void => {
      const c = candidate(key);
      put(key, c?.cluster ?? '', c?.rec, undefined);
    },
    keys,
  };
}
