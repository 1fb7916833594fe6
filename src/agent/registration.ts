/**
 * What this node writes to etcd, and the local state behind it: its WireGuard
 * key, its node (and gateway) record under a lease, its local endpoints (the
 * agent API's, persisted next to the key so that a restarted agent, even after
 * kill -9, re-registers them before the old lease expires) with their
 * identities, and the relay offer and health record that ride on the lease.
 * After a lost lease or a failed write it tries again, with a doubling pause
 * (registrationstate.ts), until every record is written: each endpoint alone,
 * so one that fails holds none of the others back.
 */
import { endpointName, stateKey, statePrefix } from '../controlplane/keys.js';
import { refusedInto, type KVLease, type KVStore, type KVWriter } from '../controlplane/kvstore.js';
import { endpointCodec, gatewayCodec, namespaceCodec, nodeCodec, stateLocation, tryDecode, type EndpointRecord, type NodeRecord, type RecordError } from '../controlplane/records/index.js';
import { MAX_LABELS } from '../controlplane/records/fields.js';
import type { GatewayRecord } from '../controlplane/types.js';
import { ConfigError, EndpointConflictError } from '../errors.js';
import { endpointIdentityLabels, type Labels } from '../identity/identity.js';
import type { Logger } from '../log.js';
import { parseIP, parsePrefix, prefixContains } from '../net/ip.js';
import type { ContainerPort } from '../policy/ports.js';
import { addressHolders } from './addressholders.js';
import type { LocalEndpoint } from './endpoint.js';
import { endpointFileOf, loadEndpointFile, saveEndpointFile } from './endpointfile.js';
import type { AgentConfig } from './config.js';
import { checkPublishBound, DEFAULT_MAX_ENDPOINTS_PER_NODE } from './endpointquota.js';
import { REGISTRATION_RETRY, Retrier, type RegistrationStatus, type RetryPause } from './registrationstate.js';

export type { LocalEndpoint };
export { loadOrCreateKey } from './keyfile.js';

/** Identity numbers of label sets (identity/allocator.ts IdentityAllocator). */
export interface IdentitySource {
  /** The identity of `labels`, referenced under lease `leaseId`. */
  allocate(labels: Labels, leaseId: string): Promise<number>;
  /** This node stops using `id`. */
  release(id: number): Promise<void>;
}

/** The policy data path's view of local endpoints (policy/datapath.ts PolicyDatapath). */
export interface LocalEndpointPolicy {
  setLocalEndpoint(key: string, identity: number, labels: Labels, ips: string[], ports?: ContainerPort[]): void;
  removeLocalEndpoint(key: string): void;
  setNamespaces(names: Iterable<string>): void;
}

/** The store calls registration makes. */
export type RegistrationStore = Pick<KVStore, 'list'> & KVWriter;

export interface RegistrationDeps {
  cfg: Pick<AgentConfig, 'cluster' | 'node' | 'leaseTTL' | 'gateway' | 'admission'> & { wireguard: { privateKeyFile: string } };
  store: RegistrationStore;
  /** With policy on: identities of local endpoints and the data path that enforces them. */
  identities?: { allocator: IdentitySource; datapath: LocalEndpointPolicy };
  /**
   * The endpoint records known (own cluster and cached) naming address `ip`: address conflicts. The agent's: with
   * policy on the data path's by-address index (O(records naming it), no walk per CNI add), else a walk of its table.
   */
  endpointsAt(ip: string): Iterable<EndpointRecord>;
  rejections: { add(err: RecordError, origin: string): void };
  log: Logger;
  /** The pause between attempts (default REGISTRATION_RETRY: 1 s, doubling to 30 s). */
  retry?: RetryPause;
}

export class Registration {
  private lease: KVLease | undefined;
  /** The lease's id once the node record is written under it; undefined before, and from its loss. */
  private leaseId: string | undefined;
  private leaseLost = false;
  private stopped = false;
  /** Local endpoints (namespace/name) whose records the current lease does not hold yet. */
  private readonly unwritten = new Set<string>();
  /** Records (etcd keys) of addresses this node no longer holds whose delete has not succeeded yet (retried). */
  private readonly undeleted = new Set<string>();
  /** The relay offer's last change is not written yet (retried). */
  private relayUnwritten = false;
  /** Why the last attempt failed (undefined once all is written). */
  private problem: { state: 'pending' | 'failed'; reason: string } | undefined;
  private failures = 0;
  private readonly retrier: Retrier;
  private publishedRelay = '';
  private readonly local = new Map<string, LocalEndpoint>(); // by "namespace/name"
  /** Identity of each local endpoint, by namespace/name. */
  readonly identities = new Map<string, number>();
  /** Labels of this cluster's v1 Namespace objects (state/namespaces): they enter the identities of their pods. */
  private readonly namespaceLabels = new Map<string, Labels>();
  /** The tail of the local endpoint changes queue (serialized()). */
  private endpointOps: Promise<unknown> = Promise.resolve();

  /** `node`: this node's record, as registered on every (new) lease. */
  constructor(
    private readonly d: RegistrationDeps,
    private readonly node: NodeRecord,
  ) {
    this.retrier = new Retrier(() => this.attempt(), d.retry ?? REGISTRATION_RETRY);
  }

  private get cluster(): string {
    return this.d.cfg.cluster.name;
  }

  private get stateFile(): string {
    return endpointFileOf(this.d.cfg.wireguard.privateKeyFile);
  }

  /** This node's record of an endpoint address (ip v2: under the node, so RBAC can keep it ours). */
  private endpointKey(ip: string): string {
    return stateKey('ip', this.cluster, endpointName(this.d.cfg.node.name, ip));
  }

  private gatewayRecord(): GatewayRecord | undefined {
    const g = this.d.cfg.gateway;
    if (!g) return undefined;
    return { cluster: this.cluster, node: this.d.cfg.node.name, address: g.address, ...(g.region ? { region: g.region } : {}), listeners: g.listeners.map((l) => ({ service: l.service, port: l.port, listenPort: l.listenPort })) };
  }

  /**
   * Writes the node (and gateway) record under a new lease, then every local endpoint; again whenever the
   * lease is lost. Throws when the node record cannot be written (the agent does not start); an endpoint that
   * fails is retried (status()), as is everything after a lost lease.
   */
  async register(): Promise<void> {
    this.openLease();
    await this.writeNode();
    await this.writeEndpoints();
  }

  /** Where registration stands (GET /v1/status `registration`). */
  status(): RegistrationStatus {
    const pendingEndpoints = [...this.unwritten].filter((k) => this.local.has(k)).length;
    const done = !this.leaseLost && this.leaseId !== undefined && pendingEndpoints === 0 && !this.undeleted.size && !this.relayUnwritten;
    if (done || !this.problem) return { state: done ? 'registered' : 'pending', pendingEndpoints, failures: this.failures };
    return { ...this.problem, pendingEndpoints, failures: this.failures };
  }

  private openLease(): void {
    const lease = this.d.store.lease(this.d.cfg.leaseTTL);
    this.lease = lease;
    this.leaseId = undefined;
    this.leaseLost = false;
    // a new lease holds none of the records yet
    for (const key of this.local.keys()) this.unwritten.add(key);
    lease.onLost((err) => {
      if (this.stopped || this.lease !== lease) return;
      this.d.log.warn({ err: err.message }, 'etcd lease lost, registering again');
      this.leaseLost = true;
      this.leaseId = undefined;
      this.problem = { state: 'pending', reason: `lease lost: ${err.message}` };
      // 1 s after a loss that follows a success; a lease lost again before one (etcd down: its grant fails) waits longer
      this.retrier.failed();
    });
  }

  private async writeNode(): Promise<void> {
    const lease = this.lease!;
    await lease.put(stateKey('nodes', this.cluster, this.d.cfg.node.name), nodeCodec.encode(this.node));
    const gw = this.gatewayRecord();
    if (gw) await lease.put(stateKey('gateways', this.cluster, this.d.cfg.node.name), gatewayCodec.encode(gw));
    // A hub's relay offer lived under the lost lease too: write it again (publishRelay only writes changes).
    if (this.publishedRelay) await lease.put(this.relayKey(), this.publishedRelay);
    this.relayUnwritten = false;
    const id = await lease.grant();
    if (this.lease === lease && !this.leaseLost) this.leaseId = id;
  }

  /** One retry: a new lease if the last was lost, the node record if not written yet, then the endpoints not written. */
  private async attempt(): Promise<void> {
    if (this.stopped) return;
    try {
      if (this.leaseLost) this.openLease();
      if (this.leaseId === undefined) await this.writeNode();
    } catch (err) {
      return this.failed(`node record: ${(err as Error).message}`);
    }
    await this.writeEndpoints();
  }

  private failed(reason: string): void {
    this.failures++;
    this.problem = { state: 'failed', reason };
    this.d.log.error({ reason }, 'registration failed, trying again');
    this.retrier.failed();
  }

  /**
   * Writes the records of the endpoints the lease lacks, each alone: one that fails is retried later and holds
   * none of the others back. Queued with the endpoint changes, so an endpoint removed meanwhile (CNI DEL) is
   * not written again.
   */
  private writeEndpoints(): Promise<void> {
    return this.serialized(async () => {
      const leaseId = this.leaseId;
      let failed = false;
      const fail = () => (failed = true);
      await this.deleteUndeleted().catch(fail);
      if (this.relayUnwritten && leaseId !== undefined) await this.writeRelay().catch(fail);
      for (const key of [...this.unwritten]) {
        // stopped, or the lease lost meanwhile: the attempt that registers the node on a new lease writes them all
        if (this.stopped || leaseId === undefined || this.leaseId !== leaseId) return;
        const ep = this.local.get(key);
        if (!ep) this.unwritten.delete(key);
        else await this.putEndpoint(ep).catch(fail);
      }
      if (failed || this.leaseId !== leaseId) return;
      this.problem = undefined;
      this.retrier.succeeded();
    });
  }

  /** Writes `key` under the lease; undefined (nothing written) before registration or after stop. */
  putLeased(key: string, value: string): Promise<void> | undefined {
    if (!this.lease || this.stopped) return undefined;
    return this.lease.put(key, value);
  }

  /** Our relay offer (peers.ts relayOffer; '' for none): written or deleted when it changed. */
  publishRelay(value: string): void {
    if (value === this.publishedRelay || !this.lease) return;
    this.publishedRelay = value;
    this.relayUnwritten = true;
    void this.writeRelay().catch(() => undefined); // failed() logged it; retried
  }

  /** Writes (or deletes) the relay offer as it is now; on failure it stays unwritten, a retry is scheduled. */
  private async writeRelay(): Promise<void> {
    const value = this.publishedRelay;
    try {
      await (value ? this.lease!.put(this.relayKey(), value) : this.d.store.delete(this.relayKey()));
      if (this.publishedRelay === value) this.relayUnwritten = false;
    } catch (err) {
      this.failed(`relay offer: ${(err as Error).message}`);
      throw err;
    }
  }

  private relayKey(): string {
    return stateKey('relays', this.cluster, this.d.cfg.node.name);
  }

  /** Stops keeping the lease alive: the records expire with it, so a restarting agent takes them over. */
  stop(): void {
    this.stopped = true;
    this.retrier.stop();
    this.lease?.release();
  }

  // ---- namespaces and identities -----------------------------------------------------

  /** This cluster's Namespace objects, read once at start (the watcher keeps them after). */
  async loadNamespaces(): Promise<void> {
    try {
      // what the store refuses (not UTF-8) is counted as the decoder's refusals are, not dropped unseen
      const refused = refusedInto(this.d.rejections, namespaceCodec.type, this.cluster);
      for (const { key, value } of (await this.d.store.list(statePrefix('namespaces', this.cluster), refused)).kvs) {
        const loc = stateLocation('namespaces', key);
        const r = tryDecode(namespaceCodec, key, value);
        if (!r.ok) this.d.rejections.add(r.error, this.cluster);
        else if (loc) this.namespaceLabels.set(loc.name, r.value.metadata.labels ?? {});
      }
      this.d.identities?.datapath.setNamespaces(this.namespaceLabels.keys());
    } catch (err) {
      this.d.log.warn({ err: (err as Error).message }, 'could not read namespaces yet; the watcher will deliver them');
    }
  }

  /**
   * A Namespace object applied (labels) or deleted (null): when its labels
   * changed, its pods here get the identity of their new label set, and
   * policy follows (namespaceSelector, io.cilium.k8s.namespace.labels).
   */
  setNamespace(name: string, labels: Labels | null): void {
    const old = this.namespaceLabels.get(name);
    if (labels) this.namespaceLabels.set(name, labels);
    else this.namespaceLabels.delete(name);
    this.d.identities?.datapath.setNamespaces(this.namespaceLabels.keys());
    if (JSON.stringify(old ?? {}) === JSON.stringify(labels ?? {})) return;
    for (const [key, ep] of this.local)
      if (ep.namespace === name && this.leaseId)
        // queued behind any change of the endpoint in flight; it then takes the endpoint as it is by that time
        void this.serialized(async () => {
          const cur = this.local.get(key);
          if (cur) await this.putEndpoint(cur);
        }).catch((err) => this.d.log.error({ endpoint: key, err: (err as Error).message }, 'could not move the endpoint to its namespace\'s new labels'));
  }

  /**
   * Local endpoint changes run one at a time. Each takes etcd round trips
   * (identity allocation, record writes); run concurrently, a later change
   * (a relabel back) could finish first and the earlier one then leave the
   * data path and the record on a stale identity with its access, or a change
   * in flight re-create an endpoint just removed.
   */
  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.endpointOps.then(fn, fn);
    this.endpointOps = run.catch(() => undefined);
    return run;
  }

  /** Allocates (or finds) the endpoint's identity and hands it to the data path. */
  private async endpointIdentity(ep: LocalEndpoint, leaseId: string | undefined): Promise<number | undefined> {
    const ids = this.d.identities;
    if (!ids || !leaseId) return undefined;
    const key = `${ep.namespace}/${ep.name}`;
    const labels = endpointIdentityLabels(ep.labels, ep.namespace, this.cluster, this.namespaceLabels.get(ep.namespace));
    // MAX_POD_LABELS keeps this within bounds; an identity past them would be refused by every reader
    if (Object.keys(labels).length > MAX_LABELS) throw new ConfigError('labels', `the identity of ${key} would hold ${Object.keys(labels).length} labels (at most ${MAX_LABELS})`);
    const id = await ids.allocator.allocate(labels, leaseId);
    const old = this.identities.get(key);
    this.identities.set(key, id);
    if (old !== undefined && old !== id) await this.releaseIdentity(old);
    ids.datapath.setLocalEndpoint(key, id, labels, ep.ips, ep.ports ?? []);
    return id;
  }

  private async releaseIdentity(id: number): Promise<void> {
    if ([...this.identities.values()].includes(id)) return; // another endpoint here still uses it
    await this.d.identities?.allocator.release(id);
  }

  /**
   * Writes the endpoint's records under the current lease (with its identity, under policy). On failure it stays
   * unwritten, a retry is scheduled and the error thrown: the agent API's caller sees it too.
   */
  private async putEndpoint(ep: LocalEndpoint): Promise<void> {
    const key = `${ep.namespace}/${ep.name}`;
    // all under the lease this began on: one lost meanwhile (an answer late) must not count it written under the next
    const lease = this.lease!, leaseId = this.leaseId;
    this.unwritten.add(key);
    for (const ip of ep.ips) this.undeleted.delete(this.endpointKey(ip)); // held again: not to delete
    try {
      // under policy a record names its identity, referenced under the lease: none before the node's registration
      if (this.d.identities && leaseId === undefined) throw new Error('not registered yet');
      const identity = await this.endpointIdentity(ep, leaseId);
      for (const ip of ep.ips) {
        const rec: EndpointRecord = { ip, cluster: this.cluster, node: this.d.cfg.node.name, namespace: ep.namespace, name: ep.name, labels: ep.labels, ...(identity !== undefined ? { identity } : {}), ...(ep.ports?.length ? { ports: ep.ports } : {}) };
        await lease.put(this.endpointKey(ip), endpointCodec.encode(rec));
      }
      if (this.lease === lease && this.leaseId === leaseId && !this.leaseLost) this.unwritten.delete(key);
    } catch (err) {
      this.failed(`endpoint ${key}: ${(err as Error).message}`);
      throw err;
    }
  }

  /** Deletes the records in `undeleted`, each alone; throws the first error after trying all (each failure retried). */
  private async deleteUndeleted(): Promise<void> {
    let first: unknown;
    for (const k of [...this.undeleted]) {
      await this.d.store.delete(k).then(() => this.undeleted.delete(k), (err: Error) => {
        this.failed(`delete ${k}: ${err.message}`);
        first ??= err;
      });
    }
    if (first) throw first;
  }

  // ---- local endpoints (the CNI-facing API calls these) -------------------------

  /**
   * Adds or updates a local endpoint (the agent API, a CNI plugin). A pod
   * speaks only from its own addresses: each must lie in this node's pod
   * CIDRs, and an address another endpoint holds (of this node under another
   * name, or a live record of another node) is refused unless `replace`
   * says to take it over. Throws EndpointConflictError / ConfigError.
   */
  addEndpoint(ep: LocalEndpoint, opts: { replace?: boolean } = {}): Promise<void> {
    return this.serialized(() => this.addEndpointNow(ep, opts));
  }

  /**
   * Changes a local endpoint from what it is when its turn comes (`change`
   * may throw to refuse); undefined when there is no such endpoint. The
   * agent API's PATCH: two label patches never both start from the same labels.
   */
  updateEndpoint(namespace: string, name: string, change: (cur: LocalEndpoint) => LocalEndpoint): Promise<LocalEndpoint | undefined> {
    return this.serialized(async () => {
      const cur = this.local.get(`${namespace}/${name}`);
      if (!cur) return undefined;
      const ep = change(cur);
      await this.addEndpointNow(ep, {});
      return ep;
    });
  }

  /** Removes a local endpoint: false when there is none of that name. */
  removeEndpoint(namespace: string, name: string): Promise<boolean> {
    return this.serialized(() => this.removeEndpointNow(namespace, name));
  }

  localEndpoints(): LocalEndpoint[] {
    return [...this.local.values()];
  }

  get localCount(): number {
    return this.local.size;
  }

  private async addEndpointNow(ep: LocalEndpoint, opts: { replace?: boolean }): Promise<void> {
    const key = `${ep.namespace}/${ep.name}`;
    const podCIDRs = this.d.cfg.node.podCIDRs;
    const mine = podCIDRs.map((c) => parsePrefix(c));
    ep.ips.forEach((ip, i) => {
      const a = parseIP(ip)!;
      if (!mine.some((p) => prefixContains(p, a))) throw new ConfigError(`ips[${i}]`, `${ip} is outside this node's pod CIDRs (${podCIDRs.join(', ')})`);
    });
    checkPublishBound(this.local, key, ep.ips, this.d.cfg.admission?.maxEndpointsPerNode ?? DEFAULT_MAX_ENDPOINTS_PER_NODE);
    const holders = addressHolders(ep.ips, key, { cluster: this.cluster, node: this.d.cfg.node.name }, this.local.values(), ep.ips.flatMap((ip) => [...this.d.endpointsAt(ip)]));
    if (holders.length && !opts.replace) throw new EndpointConflictError(holders);
    for (const h of holders) {
      const other = h.node === this.d.cfg.node.name && h.cluster === this.cluster ? this.local.get(h.endpoint) : undefined;
      if (!other) continue;
      const rest = other.ips.filter((ip) => !ep.ips.includes(ip));
      if (rest.length) await this.addEndpointNow({ ...other, ips: rest }, { replace: true });
      else await this.removeEndpointNow(other.namespace, other.name);
    }
    const old = this.local.get(key);
    this.local.set(key, ep);
    this.saveLocalEndpoints();
    // the old addresses' records go even when this put fails (then retried, as their deletes are)
    if (old) for (const ip of old.ips) if (!ep.ips.includes(ip)) this.undeleted.add(this.endpointKey(ip));
    await this.putEndpoint(ep);
    await this.deleteUndeleted();
  }

  private async removeEndpointNow(namespace: string, name: string): Promise<boolean> {
    const key = `${namespace}/${name}`;
    const ep = this.local.get(key);
    if (!ep) return false;
    this.local.delete(key);
    this.unwritten.delete(key);
    this.saveLocalEndpoints();
    for (const ip of ep.ips) this.undeleted.add(this.endpointKey(ip));
    await this.deleteUndeleted();
    this.d.identities?.datapath.removeLocalEndpoint(key);
    const id = this.identities.get(key);
    this.identities.delete(key);
    if (id !== undefined) await this.releaseIdentity(id);
    return true;
  }

  /** The endpoints saved by an earlier run (endpointfile.ts). */
  loadLocalEndpoints(): void {
    for (const ep of loadEndpointFile(this.stateFile, this.d.log)) this.local.set(`${ep.namespace}/${ep.name}`, ep);
  }

  private saveLocalEndpoints(): void {
    saveEndpointFile(this.stateFile, this.local.values());
  }
}
