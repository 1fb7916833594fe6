/**
 * The agent's side of the native policy engine: keeps the ipcache, the
 * endpoints' policy maps and the peers' identity settings in step with etcd,
 * and turns the data path's flow records into enriched flows.
 *
 *   endpoint records (own cluster + cache) ──▶ ipcache  ip/32 → identity (+ local endpoint id)
 *   node records ──▶ ipcache  node address → host (us) / remote-node (others)
 *   policies (own cluster + mesh-wide cached) ──▶ rules ──▶ CIDR identities → ipcache prefixes
 *   identities (own cluster + cache) + rules ──▶ per local endpoint policy maps (recompiled on a rule or
 *     local endpoint change; an identity's own entries by delta when identities or their endpoints changed: delta.ts)
 *
 * Updates reach the data path as batches (one ipcache call, one map swap per
 * endpoint), never per packet; maps are swapped whole, and established flows
 * keep going through conntrack.
 */
import { EventEmitter } from 'node:events';
import { EndpointRecordsMap, type EndpointRecord, type EndpointRecords } from '../controlplane/endpointrecords.js';
import { RESERVED, type IdentityRecord, type Labels } from '../identity/identity.js';
import type { Logger } from '../log.js';
import type { Manifest } from '../manifests/validate.js';
import type { NativeDevice } from '../native/binding.js';
import { parsePrefix, type Prefix } from '../net/ip.js';
import { compileEndpoint, encodeEntries, IdentityUniverse, ruleWarnings, type EndpointPolicy } from './compile.js';
import { applyIdentityDelta } from './delta.js';
import { describeEndpoint } from './describe.js';
import type { ContainerPort } from './ports.js';
import type { Flow } from './flows.js';
import { FlowLog } from './flowlog.js';
import { AgentPolicies, enforcedRules, rulePrefixes } from './repository.js';
import type { Rule } from './rules.js';
import { l7Rules, type L7Rules } from './l7.js';
import { ipcacheRow } from '../native/rows.js';
import { IpcacheTable } from './ipcache.js';
import { EndpointsByAddress } from './byaddress.js';
import type { SpoofedTuple } from '../agent/spoofwatch.js';
import { spoofedFlows } from './spoofedflows.js';
import type { PolicyDatapathOptions } from './datapathoptions.js';

interface LocalEp {
  id: number;
  key: string; // namespace/name
  identity: number;
  labels: Labels;
  ips: string[];
  /** Its container ports (ingress named ports resolve against them). */
  ports: ContainerPort[];
}

export class PolicyDatapath extends EventEmitter {
  readonly universe: IdentityUniverse;
  private readonly policies: AgentPolicies;
  private rules: Rule[] = [];
  /** Warnings of the rules themselves (enforcedRules); `warnings` adds those that depend on identities and endpoints. */
  private ruleTextWarnings: string[] = [];
  private warningsCache: string[] | undefined;
  private readonly ruleNumbers = new Map<string, number>();
  private readonly ruleById = new Map<number, Rule>();
  private readonly localEps = new Map<string, LocalEp>(); // by namespace/name
  private readonly localByIp = new Map<string, LocalEp>();
  private nextEpId = 1;
  readonly compiled = new Map<string, EndpointPolicy>();
  /** The ipcache: every prefix with the sources that put it there (ipcache.ts); flushed as batches. */
  readonly ipcache = new IpcacheTable();
  /** Endpoint records by etcd key or its form (Admission.endpointKeys): opts.records, else `ownRecords`. */
  private readonly endpointRecords: EndpointRecords;
  private readonly ownRecords: EndpointRecordsMap | undefined;
  get endpoints(): EndpointRecords { return this.endpointRecords; }
  /** Whether `endpoints` is its own table (no opts.records; then `previous` is not read). */
  get ownsEndpoints(): boolean { return this.ownRecords !== undefined; }
  /** The records naming an address (the latest describes it; registration's conflict check reads them all). */
  private readonly addresses: EndpointsByAddress;
  get byAddress(): Pick<EndpointsByAddress, 'at' | 'all'> { return this.addresses; }
  private readonly nodeAddresses = new Map<string, readonly string[]>(); // node id -> addresses (setNode: ours only)
  private dirty = false;
  /** Identities whose labels changed (or that came or went) since the maps were written: applied by delta. */
  private readonly changedIds = new Set<number>();
  /** The rules name ports or ipBlocks that resolve against endpoints: endpoint changes recompile. */
  private rulesUseEndpoints = false;
  private scheduled = false;
  private timers: NodeJS.Timeout[] = [];
  /** The flow history (flowlog.ts); new flows are emitted as 'flows'. */
  private readonly flowLog: FlowLog;
  /** Flow records made for the pod guard's source-spoofed drops. */
  spoofedRecords = 0;
  lastCompileMs = 0;
  /** Flow records not sent to followers of the flow stream that read too slowly (agent/api.ts), since the start. */
  flowsNotSent = 0;
  /** The last identity delta's time (ms) and entries written. */
  lastDelta = { ms: 0, entries: 0 };

  constructor(
    private readonly dev: NativeDevice,
    private readonly cluster: string,
    private readonly node: string,
    private readonly opts: PolicyDatapathOptions,
    private readonly log: Logger,
  ) {
    super();
    this.endpointRecords = opts.records ?? (this.ownRecords = new EndpointRecordsMap());
    this.addresses = new EndpointsByAddress(this.endpointRecords, this.ipcache);
    this.policies = new AgentPolicies(cluster, opts.enforcesPoliciesOf);
    this.universe = new IdentityUniverse(cluster, this.endpointRecords); // its endpoint facts are these records
    this.flowLog = new FlowLog({
      node,
      cluster,
      rule: (n) => this.ruleById.get(n),
      localIdentity: (ip) => this.localByIp.get(ip)?.identity,
      describe: (ip, identity) => describeEndpoint(this.universe, identity, ip ? this.byAddress.at(ip) : undefined, opts.maxClusters),
      emit: (flows) => this.emit('flows', flows),
      following: () => this.listenerCount('flows') > 0,
    });
    dev.enablePolicy();
    if (opts.conntrack) dev.setConntrackLimits(opts.conntrack.maxEntries, opts.conntrack.perEndpoint, opts.conntrack.natPerEndpoint);
    dev.setHostFirewall(opts.hostFirewall ?? true);
  }

  start(): void {
    this.timers.push(setInterval(() => this.drainFlows(), 100), setInterval(() => this.dev.ctGc(), 10_000));
    for (const t of this.timers) t.unref();
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  // ---- inputs -----------------------------------------------------------------

  upsertIdentity(rec: IdentityRecord): void {
    this.universe.identities.set(rec.id, rec.labels);
    this.flowLog.forget();
    this.identityChanged(rec.id);
  }

  removeIdentity(id: number): void {
    if (this.universe.identities.delete(id)) this.identityChanged(id);
    this.flowLog.forget();
  }

  /**
   * Its entries change by delta at the next flush, unless so many identities
   * changed at once (an initial sync) that one full compile costs less.
   */
  private identityChanged(id: number): void {
    this.warningsCache = undefined;
    this.changedIds.add(id);
    if (id === 0 || this.changedIds.size * this.localEps.size > Math.max(1024, this.universe.identities.size)) this.markDirty();
    else this.scheduleFlush();
  }

  /** What the rules cannot resolve now (compile.ts ruleWarnings), one line each. */
  get warnings(): string[] {
    return (this.warningsCache ??= [...this.policies.notAccepted(), ...this.ruleTextWarnings, ...ruleWarnings(this.rules, this.universe)]);
  }

  /**
   * A stored policy, decoded (records/manifest.ts): from our cluster (always
   * enforced) or cached from another (enforced when mesh-wide and accepted).
   */
  upsertPolicy(etcdKey: string, cluster: string, name: string, manifest: Manifest): void {
    this.warningsCache = undefined;
    if (this.policies.upsert(etcdKey, { cluster, name, manifest })) this.markDirty();
  }

  /** What is accepted from which cluster changed: compile again. */
  policyTrustChanged(): void {
    this.markDirty();
  }

  removePolicy(etcdKey: string): void {
    this.warningsCache = undefined;
    if (this.policies.remove(etcdKey)) this.markDirty();
  }

  /**
   * An endpoint record, by its etcd key or that key's form (the owner of its ipcache entry; the agent's keys are
   * Admission.endpointKeys' forms, never another owner's text: setNode): two
   * records may name one address for a while (a pod moved to another node, the
   * old record not expired yet); the latest wins and the other's removal leaves it.
   * `previous`: with opts.records (only then read), the record the caller's table held for `key` (undefined: none).
   */
  upsertEndpoint(key: string, rec: EndpointRecord, previous: EndpointRecord | undefined): void {
    const own = this.ownRecords;
    const old = own ? own.get(key) : previous;
    if (old && old.ip !== rec.ip) this.removeEndpoint(key, old);
    if (own) {
      // the universe reads its facts in this map's order: a record gaining an identity goes last (as its own table did)
      if (old?.identity === undefined && rec.identity !== undefined) own.delete(key);
      own.set(key, rec);
    }
    this.addresses.added(key, rec.ip); // (re)inserted last: the latest record describes the address
    this.flowLog.forget();
    this.endpointFacts(old?.ip === rec.ip ? old : undefined, rec);
    if (old && old.ip === rec.ip && old.identity === rec.identity && old.node === rec.node) return;
    // (the owner is the etcd key itself, shared text, never another owner's: setNode)
    this.ipcache.set(rec.ip, key, 'endpoint', { identity: rec.identity ?? RESERVED.world, endpoint: this.localEndpointId(rec) });
    this.scheduleFlush();
  }

  /** `previous`: with opts.records, the record the caller's table held for `key` (undefined: none); read only then. */
  removeEndpoint(key: string, previous: EndpointRecord | undefined): void {
    const own = this.ownRecords;
    const old = own ? own.get(key) : previous;
    if (!old) return;
    own?.delete(key);
    this.addresses.removed(key, old.ip);
    this.flowLog.forget();
    this.endpointFacts(old, undefined);
    this.ipcache.delete(old.ip, key);
    this.scheduleFlush();
  }

  /** Addresses and container ports for named ports and ipBlocks (compile.ts): recompile when rules use them. */
  // only the groups of the identities whose endpoints changed depend on them (delta.ts): a remote's endpoint churn no longer recompiles every map
  private endpointFacts(old: EndpointRecord | undefined, rec: EndpointRecord | undefined): void {
    if (!this.universe.endpointChanged(old, rec) || !this.rulesUseEndpoints) return;
    for (const id of new Set([old?.identity, rec?.identity])) if (id !== undefined) this.identityChanged(id);
  }

  /** Namespaces the cluster declared (v1 Namespace objects): known to the "unknown namespace" warning. */
  setNamespaces(names: Iterable<string>): void {
    this.universe.namespaces.clear();
    for (const n of names) this.universe.namespaces.add(n);
    this.markDirty();
  }

  /**
   * Node addresses of node `id` ("cluster/node"; null: the node is gone): ours are `host`, every other node's
   * `remote-node`. `previous`: the addresses `id` was last set to (null: none), from a caller that keeps them anyway
   * (the peer reconciler: its node record's); then this keeps none for `id` (s23node: a Map entry per remote node,
   * ~38 B). Without it (this agent's own node) the last addresses are kept here. A caller passes it for an id
   * always or never. The ipcache owner is `id` itself (s37: no `node:` copy, 32–40 B per node). No other owner is
   * that text: an id is `cluster/node` ([a-z0-9.-], one '/'); an endpoint's is a key form (a control character
   * first, or a key under an ip prefix: five '/' and more); a local endpoint's or a CIDR's has a ':'.
   */
  setNode(id: string, addresses: readonly string[] | null, previous?: readonly string[] | null): void {
    const before = previous === undefined ? this.nodeAddresses.get(id) : previous;
    for (const a of before ?? []) if (!addresses?.includes(a)) this.ipcache.delete(a, id);
    if (previous === undefined) {
      if (addresses) this.nodeAddresses.set(id, addresses);
      else this.nodeAddresses.delete(id);
    }
    const identity = id === `${this.cluster}/${this.node}` ? RESERVED.host : RESERVED['remote-node'];
    for (const a of addresses ?? []) this.ipcache.set(a, id, 'node', { identity, endpoint: 0 });
    this.scheduleFlush();
  }

  /** A local endpoint and its allocated identity (the agent allocated it in etcd). */
  setLocalEndpoint(key: string, identity: number, labels: Labels, ips: string[], ports: ContainerPort[] = []): void {
    const old = this.localEps.get(key);
    const ep: LocalEp = { id: old?.id ?? this.nextEpId++, key, identity, labels, ips, ports };
    this.localEps.set(key, ep);
    for (const ip of old?.ips ?? [])
      if (!ips.includes(ip)) {
        this.localByIp.delete(ip);
        this.ipcache.delete(ip, `local:${key}`);
      }
    for (const ip of ips) {
      this.localByIp.set(ip, ep);
      this.ipcache.set(ip, `local:${key}`, 'local-endpoint', { identity, endpoint: ep.id });
    }
    this.scheduleFlush();
    this.markDirty();
  }

  removeLocalEndpoint(key: string): void {
    const ep = this.localEps.get(key);
    if (!ep) return;
    this.localEps.delete(key);
    this.compiled.delete(key);
    this.dev.removeEndpoint(ep.id);
    for (const ip of ep.ips) {
      this.localByIp.delete(ip);
      this.ipcache.delete(ip, `local:${key}`);
    }
    this.scheduleFlush();
  }

  /** Peer settings: mesh peers tag; a tag must carry the peer's cluster or one it relays for. */
  peerIdentity(peerId: number, clusterIds: number[]): void {
    this.dev.setPeerIdentity(peerId, true, RESERVED.world, [...new Set(clusterIds)]);
  }

  // ---- ipcache ------------------------------------------------------------------

  private localEndpointId(rec: EndpointRecord): number {
    if (rec.cluster !== this.cluster || rec.node !== this.node) return 0;
    return this.localEps.get(`${rec.namespace}/${rec.name}`)?.id ?? 0;
  }

  private scheduleFlush(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      // a fault here is a bug; it must cost one pass, not the agent (and with it every pod's mesh)
      try {
        if (this.dirty) this.recompile();
        else if (this.changedIds.size) this.applyIdentityChanges();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'policy compile failed; the previous maps stay in force');
      }
      try {
        this.flushIpcache();
      } catch (err) {
        this.log.error({ err: (err as Error).message }, 'ipcache update failed');
      }
    });
  }

  private flushIpcache(): void {
    const changes = this.ipcache.takeChanges();
    if (changes.size === 0) return;
    const ups: Buffer[] = [];
    const dels: Buffer[] = [];
    for (const [k, v] of changes) {
      const p: Prefix = parsePrefix(k);
      if (v) ups.push(ipcacheRow(p.addr, p.cidr, v.identity, v.endpoint));
      else dels.push(ipcacheRow(p.addr, p.cidr, 0, 0));
    }
    this.dev.ipcacheUpdate(Buffer.concat(ups), Buffer.concat(dels));
  }

  // ---- policy ---------------------------------------------------------------------

  private markDirty(): void {
    this.dirty = true;
    this.scheduleFlush();
  }

  ruleNumber(r: Rule): number {
    let n = this.ruleNumbers.get(r.id);
    if (n === undefined) {
      n = this.ruleNumbers.size + 1;
      this.ruleNumbers.set(r.id, n);
    }
    this.ruleById.set(n, r);
    return n;
  }

  /** Recompiles every local endpoint's maps (and the CIDR identities rules name). */
  recompile(): void {
    const t0 = performance.now();
    this.dirty = false;
    this.changedIds.clear();
    this.warningsCache = undefined;
    this.ruleTextWarnings = [];
    this.rules = enforcedRules(this.policies.enforcedNow(), this.cluster, this.opts.defaultLocalCluster, this.ruleTextWarnings, this.opts.enforcesPoliciesOf);
    this.rulesUseEndpoints = this.rules.some((r) => r.ports.some((p) => p.name !== undefined) || r.peers.some((p) => p.kind === 'cidr' && p.endpoints === true));
    // CIDR identities: every prefix a rule names, so the longest match decides
    const wanted = rulePrefixes(this.rules);
    // (owned as `cidr:<text>`: a pod's or a node's own entry for the same prefix wins, and outlives the rule)
    for (const [text, prefix] of wanted) this.ipcache.set(text, `cidr:${text}`, 'cidr', { identity: this.universe.cidrIdentity(text, prefix), endpoint: 0 });
    for (const text of this.universe.cidrs.keys())
      if (!wanted.has(text)) {
        this.ipcache.delete(text, `cidr:${text}`);
        this.universe.cidrs.delete(text);
      }
    this.universe.withRuleMemo(() => {
      for (const ep of this.localEps.values()) {
        const pol = compileEndpoint(ep.labels, this.rules, this.universe, (r) => this.ruleNumber(r), ep.ports);
        this.compiled.set(ep.key, pol);
        this.dev.setEndpointPolicy(ep.id, ep.identity, encodeEntries(pol.ingress), encodeEntries(pol.egress));
      }
    });
    this.flowLog.forget(); // CIDR identities may have changed
    this.lastCompileMs = performance.now() - t0;
    this.emit('compiled');
  }

  /** Writes the identities that changed since the last compile or delta into the maps, by delta (delta.ts). */
  applyIdentityChanges(): void {
    const t0 = performance.now();
    const ids = new Set(this.changedIds);
    this.changedIds.clear();
    // A delta that fails half way leaves some maps patched and some not: a full compile rewrites every one (fail closed, not stale).
    const entries = (() => { try { return applyIdentityDelta(this.dev, this.localEps.values(), this.compiled, ids, this.universe, (r) => this.ruleNumber(r)); } catch (err) { this.markDirty(); throw err; } })();
    this.lastDelta = { ms: performance.now() - t0, entries };
    this.emit('compiled'); // the proxy's answers for these identities may have changed
  }

  /** Summary for `GET /v1/policy`. */
  summary(): Record<string, unknown> {
    return {
      rules: this.rules.map((r) => ({ id: r.id, number: this.ruleNumbers.get(r.id), text: r.text })),
      endpoints: [...this.localEps.values()].map((ep) => {
        const c = this.compiled.get(ep.key);
        return {
          endpoint: ep.key,
          id: ep.id,
          identity: ep.identity,
          ingress: c?.ingress ? { enforced: true, entries: c.ingress.length, rules: c.selectedBy.ingress.map((r) => r.id) } : { enforced: false },
          egress: c?.egress ? { enforced: true, entries: c.egress.length, rules: c.selectedBy.egress.map((r) => r.id) } : { enforced: false },
        };
      }),
      cidrIdentities: [...this.universe.cidrs.entries()].map(([cidr, c]) => ({ cidr, identity: c.id })),
      identities: this.universe.identities.size,
      ipcacheEntries: this.ipcache.size,
      warnings: this.warnings,
      lastCompileMs: Math.round(this.lastCompileMs * 100) / 100,
    };
  }

  // ---- flows ------------------------------------------------------------------------

  /** Records lost before they were drained (the native ring was full). */
  get flowsLost(): number {
    return this.flowLog.lost;
  }

  drainFlows(): void {
    const { records, lost } = this.dev.drainFlows();
    this.flowLog.addNative(records, lost);
  }

  /**
   * Flow records for packets the pod guard dropped at a pod's veth because
   * their source was not the pod's (src/agent/spoofwatch.ts): spoofedflows.ts.
   */
  addSpoofedFlows(tuples: SpoofedTuple[]): void {
    this.spoofedRecords += tuples.length;
    const identityAt = (ip: string) => this.localByIp.get(ip)?.identity ?? this.byAddress.at(ip)?.identity ?? 0;
    this.flowLog.add(spoofedFlows(tuples, { localEps: this.localEps.values(), flowLog: this.flowLog, identityAt, node: this.node, cluster: this.cluster }));
  }

  /** The flow history, oldest first. */
  get flows(): Flow[] {
    return this.flowLog.flows;
  }

  /** The L7 proxy's request records (flowlog.ts: enriched when read or followed). */
  addL7Records(rows: Buffer, text: Buffer): void {
    this.flowLog.addL7Records(rows, text);
  }

  /**
   * The L7 rules for a flow the data path sent to the proxy: the local
   * endpoint at dstIp, its ingress rules for TCP dstPort and the source
   * identity. null: no such local endpoint (the proxy refuses the flow).
   */
  l7For(dstIp: string, dstPort: number, identity: number): { endpoint: string; rules: L7Rules } | null {
    const ep = this.localByIp.get(dstIp);
    const pol = ep ? this.compiled.get(ep.key) : undefined;
    if (!ep || !pol) return null;
    return { endpoint: ep.key, rules: l7Rules(pol.selectedBy.ingress, this.universe, identity, dstPort, ep.ports) };
  }
}
