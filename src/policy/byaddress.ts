/**
 * Which endpoint record describes an address: the latest one naming it (two
 * records may name one address for a while: a pod moved to another node, the
 * old record not expired yet). Without a table entry per address (issue 16,
 * bench/memory.ts: ~46 B per remote endpoint): every record claims its address
 * in the ipcache under its etcd key (PolicyDatapath.upsertEndpoint), so the
 * one record naming an address is found there; only addresses several records
 * name are listed here, their keys latest last.
 *
 * An address is the record's own text (`ip`): a record is found by the text it
 * gives, as by a map keyed by that text (the ipcache's slot is the canonical
 * address, so its owners are filtered by exact text). A record whose address
 * does not parse has no ipcache claim and so is never found here (unreachable:
 * the endpoint codec admits canonical addresses only, records/fields.ts).
 * Bounded by the records held: `shared` lists only keys of records in the data path.
 */
import type { EndpointRecord } from '../controlplane/types.js';
import type { IpcacheTable } from './ipcache.js';

export class EndpointsByAddress {
  /** ip -> the keys of the records naming it, latest last, while two or more do. */
  private readonly shared = new Map<string, string[]>();

  /**
   * `records`: the data path's records by etcd key (its own map, or the agent's table: PolicyDatapath opts.records);
   * `ipcache`: where each of them claims `ip` as an 'endpoint' owner under its key (claimed after `added`, given up
   * before or after `removed`).
   */
  constructor(
    private readonly records: ReadonlyMap<string, EndpointRecord>,
    private readonly ipcache: IpcacheTable,
  ) {}

  /** Keys of the records whose address text is `ip`, by the ipcache's owners (at most one outside `shared`). */
  private named(ip: string): string[] {
    return this.ipcache.ownersOfKind(ip, 'endpoint').filter((k) => this.records.get(k)?.ip === ip);
  }

  /** Record `key` (already in `records`) names `ip`: it describes the address from now on. */
  added(key: string, ip: string): void {
    const list = this.shared.get(ip) ?? this.named(ip).filter((k) => k !== key);
    if (list.length) this.shared.set(ip, [...list.filter((k) => k !== key), key]);
  }

  /** Record `key` no longer names `ip`. */
  removed(key: string, ip: string): void {
    const list = this.shared.get(ip);
    if (!list) return;
    const rest = list.filter((k) => k !== key);
    if (rest.length > 1) this.shared.set(ip, rest);
    else this.shared.delete(ip); // the one left is found through the ipcache
  }

  /**
   * Every record naming `ip` (O(records naming it): the ipcache's owners of its slot), in no promised order: what an
   * address conflict names (agent/registration.ts). A record whose data path call threw before its claim is not seen.
   */
  all(ip: string): EndpointRecord[] {
    return this.named(ip).map((k) => this.records.get(k)!);
  }

  /** The latest record naming `ip`. */
  at(ip: string): EndpointRecord | undefined {
    const key = this.shared.get(ip)?.at(-1) ?? this.named(ip)[0];
    return key === undefined ? undefined : this.records.get(key);
  }
}
