/**
 * Health-aware DNS entry point for the ingress gateways (`wiremesh
 * gateway-dns --config FILE`): answers a service's public name with the
 * addresses of the gateways that serve it and answer right now, those in the
 * querying client's region first.
 *
 *   gateway records (agents' gateway sections, under their leases; every
 *   cluster's through kvstoremesh) ──▶ listeners per service
 *   TCP probe of every listener each second: connected within 500 ms and then
 *   neither reset nor closed for 300 ms (src/gateway/tcpprobe.ts) ──▶ healthy
 *   query from a client ──▶ its region (configured source prefixes) ──▶
 *   A/AAAA records of healthy gateways, own region first, TTL `ttl`
 *
 * A cluster that dies stops answering probes and leaves the answers within a
 * second, so new clients move within the TTL. Names not configured: REFUSED;
 * a name with no healthy gateway: SERVFAIL (resolvers retry).
 *
 * Config:
 *   etcd: { endpoints: [https://198.18.1.2:2379], caFile, certFile, keyFile }   # any cluster's etcd
 *   listen: { address: 198.18.0.53, port: 53 }
 *   ttl: 5
 *   names: { web.example.com: shop/web }
 *   regions: { eu: [198.18.200.0/24], us: [198.18.201.0/24] }
 *   metrics: { address: 198.18.0.53, port: 9962 }   # optional: Prometheus GET /metrics (gslbmetrics.ts)
 *
 * The DNS server answers on UDP and TCP (src/services/dnstcp.ts) at `listen`.
 */
import type { RemoteInfo } from 'node:dgram';
import type { Question } from 'dns-packet';
import type { Etcd3 } from 'etcd3';
import { ConfigError } from '../errors.js';
import { cachePrefix, clusterConfigPrefix, pinnedPrefix, statePrefix } from '../controlplane/keys.js';
import { connectEtcd, decoded, EtcdStore, ListWatcher } from '../controlplane/kvstore.js';
import { prefixesOverlap } from '../controlplane/types.js';
import { etcdEndpoint, fail, int, isObj, metricsListen, nonEmptyList, obj, validateAddress, validatePrefixes } from '../validate.js';
import { clusterConfigCodec, gatewayCodec, nodeCodec, notANodeAddress, pinnedClusterCodec, RecordError, Rejections, stateLocation, WAIT, type GatewayRecord, type NodeRecord } from '../controlplane/records/index.js';
import { NodePins } from './nodepins.js';
import type { Logger } from '../log.js';
import { parsePrefix, type Prefix } from '../net/ip.js';
import { parseYamlMapping, readConfigFile } from '../yamlconfig.js';
import { gatewayClientOf, gatewaySiteOf } from './gateway.js';
import { DnsServer, RCODE_REFUSED, RCODE_SERVFAIL, type Answer } from '../services/dns.js';
import { unmappedIPv4 } from './proxyproto.js';
import { listenerHealth, probeTcp, TCP_PROBE_TIMES, type ListenerHealth, type TcpProbeTimes } from './tcpprobe.js';

export const PROBE_INTERVAL_MS = 1000;

export interface GatewayDnsConfig {
  etcd: { endpoints: string[]; caFile?: string; certFile?: string; keyFile?: string };
  listen: { address: string; port: number };
  ttl: number;
  names: Map<string, string>; // public name -> namespace/name
  regions: Map<string, Prefix[]>;
  /** The Prometheus endpoint, when configured. */
  metrics?: { address: string; port: number };
}

export function parseGatewayDnsConfig(text: string): GatewayDnsConfig {
  const doc = parseYamlMapping(text, ['etcd', 'listen', 'ttl', 'names', 'regions', 'metrics']);
  // a missing or malformed etcd section is reported at its endpoints, as it always was
  const e = isObj(doc.etcd) ? doc.etcd : {};
  const endpoints = nonEmptyList(e.endpoints, 'etcd.endpoints', 'must be a non-empty list of http(s)://host:port').map((u, i) => etcdEndpoint(u, `etcd.endpoints[${i}]`));
  const file = (k: string): string | undefined => {
    if (e[k] === undefined) return undefined;
    if (typeof e[k] !== 'string') fail(`etcd.${k}`, 'must be a file path');
    return e[k];
  };
  const l = obj(doc.listen, 'listen', 'must be a mapping { address, port }');
  const port = int(l.port, 'listen.port', 1, 65535, 53);
  const ttl = int(doc.ttl, 'ttl', 1, 3600, 5, 'seconds');
  const namesReason = 'must map at least one public name to namespace/name';
  const named = obj(doc.names, 'names', namesReason);
  if (Object.keys(named).length === 0) fail('names', namesReason);
  const names = new Map<string, string>();
  for (const [n, s] of Object.entries(named)) {
    if (!/^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+[a-z0-9]([-a-z0-9]*[a-z0-9])?\.?$/i.test(n)) throw new ConfigError(`names["${n}"]`, 'must be a DNS name');
    if (typeof s !== 'string' || !/^[a-z0-9-]+\/[a-z0-9-]+$/.test(s)) throw new ConfigError(`names["${n}"]`, 'must be namespace/name of a global service');
    names.set(n.toLowerCase().replace(/\.$/, ''), s);
  }
  const regions = new Map<string, Prefix[]>();
  if (doc.regions !== undefined) {
    for (const [r, list] of Object.entries(obj(doc.regions, 'regions', 'must map region names to lists of client prefixes'))) regions.set(r, validatePrefixes(list, `regions.${r}`));
  }
  const metrics = doc.metrics === undefined ? undefined : metricsListen(obj(doc.metrics, 'metrics', 'must be a mapping { address, port }'), 'the listen address');
  return { etcd: { endpoints, caFile: file('caFile'), certFile: file('certFile'), keyFile: file('keyFile') }, listen: { address: validateAddress(l.address, 'listen.address'), port }, ttl, names, regions, ...(metrics ? { metrics } : {}) };
}

interface Target {
  record: GatewayRecord;
}

export class GatewayDns {
  /** Gateway records as stored (decoded), by etcd key; `gateways` holds those admitted. */
  private readonly offered = new Map<string, GatewayRecord>();
  /** Node records by "cluster/node" (and the key each came from): a gateway's address must be its node's. */
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly nodeKeys = new Map<string, string>();
  /** Node records as stored (decoded), by etcd key, checked again when the pins change; the refusal last reported. */
  private readonly nodeOffers = new Map<string, NodeRecord>();
  private readonly nodeRefused = new Map<string, string>();
  private recheckQueued = false;
  /** This etcd's cluster-config and pins: whose addresses a node record may name (nodepins.ts). */
  readonly pins = new NodePins();
  readonly rejections: Rejections;
  private readonly refused = new Map<string, string>();
  /** Gateway records by etcd key. */
  private readonly gateways = new Map<string, Target>();
  /** "address:port" -> healthy, and the soft failures in a row since its last pass (listenerHealth). */
  private readonly health = new Map<string, ListenerHealth>();
  /** "address:port" of the listeners the last probeAll found: a probe of one removed since is not recorded. */
  private listening = new Set<string>();
  private stopped = false;
  /** "address:port" of probes under way: one at a time per listener, so at most one socket each. */
  private readonly probing = new Set<string>();
  private etcd: Etcd3 | undefined;
  private readonly watchers: ListWatcher[] = [];
  private timer: NodeJS.Timeout | undefined;
  readonly server: DnsServer;

  constructor(
    readonly cfg: GatewayDnsConfig,
    private readonly log: Logger,
    private readonly probeTimes: TcpProbeTimes = TCP_PROBE_TIMES,
  ) {
    // a client on the open network holds a whole IPv6 /64: it counts as one source, as at the gateway;
    // and a customer's site a /48 of them, bounded as a whole too (DNS_PREFIX_LIMITS)
    this.server = new DnsServer((q, from) => this.answer(q, from), log, { sourceOf: gatewayClientOf, prefixOf: gatewaySiteOf });
    this.rejections = new Rejections(log);
  }

  /**
   * Per underlay address, the nodes claiming it, in the order they came. The
   * address is its owner's: the first claimant of this etcd's own cluster,
   * else the first claimant (as agents decide, src/agent/admission.ts), so a
   * remote claiming other nodes' addresses can neither take nor void them.
   */
  private readonly claims = new Map<string, Set<string>>();
  private readonly localNodes = new Set<string>();

  private ownerOf(address: string): string | undefined {
    const s = this.claims.get(address);
    if (!s) return undefined;
    for (const id of s) if (this.localNodes.has(id)) return id;
    return s.values().next().value;
  }

  private setNode(id: string, rec: NodeRecord | undefined): void {
    for (const a of this.nodes.get(id)?.addresses ?? []) {
      const s = this.claims.get(a);
      s?.delete(id);
      if (s?.size === 0) this.claims.delete(a);
    }
    if (!rec) return void this.nodes.delete(id);
    this.nodes.set(id, rec);
    for (const a of rec.addresses) {
      let s = this.claims.get(a);
      if (!s) this.claims.set(a, (s = new Set()));
      s.add(id);
    }
  }

  /**
   * A gateway record is used only when its address is one of its own node's
   * underlay addresses and that node owns it (docs/security.md): a cluster
   * cannot make the entry point answer with somebody else's address. Records
   * wait for their node.
   */
  private admitGateways(): void {
    let changed = false;
    for (const [k, rec] of this.offered) {
      const node = this.nodes.get(`${rec.cluster}/${rec.node}`);
      const ok = node?.addresses.includes(rec.address) === true && this.ownerOf(rec.address) === `${rec.cluster}/${rec.node}`;
      if (ok) {
        this.refused.delete(k);
        if (this.gateways.get(k)?.record !== rec) {
          this.gateways.set(k, { record: rec });
          changed = true;
        }
        continue;
      }
      if (this.gateways.delete(k)) changed = true;
      if (node && this.refused.get(k) !== rec.address) {
        this.refused.set(k, rec.address);
        const why = node.addresses.includes(rec.address) ? `address ${rec.address} is node ${this.ownerOf(rec.address)}'s` : `address ${rec.address} is not one of node ${rec.cluster}/${rec.node}'s (${node.addresses.join(', ')})`;
        this.rejections.add(new RecordError('gateway', k, 'claim', why), rec.cluster);
      }
    }
    for (const k of this.gateways.keys()) if (!this.offered.has(k) && this.gateways.delete(k)) changed = true;
    if (changed) this.probeAll(); // new targets are probed at once, not a second later
  }

  /** The gateway record at etcd key `k` is now `rec` (undefined: deleted); it is used once admitGateways admits it. */
  gatewayChanged(k: string, rec: GatewayRecord | undefined): void {
    if (rec) this.offered.set(k, rec);
    else this.offered.delete(k);
    this.admitGateways();
  }

  /**
   * The node record at etcd key `k` is now `rec` (undefined: deleted). A node naming an address that is no host
   * of its own (loopback, link-local such as 169.254.169.254: `notANodeAddress`, as agents check it) or that lies
   * outside its cluster's pinned underlay CIDRs (`NodePins`) is refused (`claim`, counted) and its gateways wait:
   * this process would probe that address (on its own host, or a resolver's) and hand it to outside clients.
   */
  nodeChanged(k: string, rec: NodeRecord | undefined): void {
    if (rec) this.nodeOffers.set(k, rec);
    else this.nodeOffers.delete(k);
    this.evaluateNode(k);
    this.admitGateways();
  }

  /**
   * The pins or the cluster-config changed: the records that change can have turned are checked again, once per
   * tick however many pin events arrive in it (a burst of connects over thousands of nodes kept DNS from answering
   * for seconds when each event re-checked every record).
   */
  pinsChanged(): void {
    if (this.recheckQueued) return;
    this.recheckQueued = true;
    setImmediate(() => this.stopped || this.recheckPins());
  }

  /**
   * Re-checks the node records NodePins says the changes since the last pass can have turned (all of them after
   * the first cluster-config or a change of the local name/id/layout; else the changed clusters' records and any
   * record with an address inside the changed clusters' old or new ranges). Cheap prefix tests select them;
   * only those meet Trust.node.
   */
  recheckPins(): void {
    this.recheckQueued = false;
    const changes = this.pins.takeChanges();
    if (!changes) return;
    for (const [k, rec] of this.nodeOffers) if (NodePins.touches(changes, rec)) this.evaluateNode(k);
    this.admitGateways();
  }

  private evaluateNode(k: string): void {
    const rec = this.nodeOffers.get(k);
    const why = rec && (rec.addresses.map(notANodeAddress).find((w) => w !== undefined) ?? this.pins.check(rec.cluster, rec));
    if (rec && why === undefined) {
      this.nodeRefused.delete(k);
      if (stateLocation('nodes', k)?.cached === false) this.localNodes.add(`${rec.cluster}/${rec.name}`);
      this.setNode(`${rec.cluster}/${rec.name}`, rec);
      this.nodeKeys.set(k, `${rec.cluster}/${rec.name}`);
      return;
    }
    if (rec && why !== WAIT && this.nodeRefused.get(k) !== why) {
      this.nodeRefused.set(k, why!);
      this.rejections.add(new RecordError('node', k, 'claim', why!), rec.cluster);
    }
    if (!rec) this.nodeRefused.delete(k);
    const id = this.nodeKeys.get(k);
    this.nodeKeys.delete(k);
    if (id) this.setNode(id, undefined);
  }

  async start(): Promise<void> {
    this.etcd = connectEtcd(this.cfg.etcd);
    const store = new EtcdStore(this.etcd);
    const origin = (k: string) => stateLocation('gateways', k)?.cluster ?? stateLocation('nodes', k)?.cluster ?? '';
    const gateways = decoded(gatewayCodec, { upsert: (k, rec) => this.gatewayChanged(k, rec), remove: (k) => this.gatewayChanged(k, undefined) }, this.rejections, origin);
    const nodes = decoded(nodeCodec, { upsert: (k, rec) => this.nodeChanged(k, rec), remove: (k) => this.nodeChanged(k, undefined) }, this.rejections, origin);
    const pinned = (k: string) => k.slice(pinnedPrefix().length);
    const config = decoded(clusterConfigCodec, { upsert: (_k, c) => (this.pins.setConfig(c), this.pinsChanged()), remove: () => undefined }, this.rejections);
    const pins = decoded(pinnedClusterCodec, { upsert: (k, p) => (this.pins.setPin(pinned(k), p), this.pinsChanged()), remove: (k) => (this.pins.setPin(pinned(k), undefined), this.pinsChanged()) }, this.rejections, pinned);
    this.watchers.push(
      new ListWatcher(store, clusterConfigPrefix(), config, this.log),
      new ListWatcher(store, pinnedPrefix(), pins, this.log),
      new ListWatcher(store, statePrefix('gateways'), gateways, this.log),
      new ListWatcher(store, cachePrefix('gateways'), gateways, this.log),
      new ListWatcher(store, statePrefix('nodes'), nodes, this.log),
      new ListWatcher(store, cachePrefix('nodes'), nodes, this.log),
    );
    for (const w of this.watchers) void w.start();
    // a DNS that cannot listen (UDP: TCP alone only logs, dns.ts) undoes the start: the caller exits non-zero
    await this.server.listen(this.cfg.listen.address, this.cfg.listen.port).catch(async (err: unknown) => {
      await this.stop();
      throw err;
    });
    this.timer = setInterval(() => this.probeAll(), PROBE_INTERVAL_MS);
    this.log.info({ listen: this.cfg.listen, names: [...this.cfg.names.keys()] }, 'gateway DNS listening');
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.server.close();
    await Promise.all(this.watchers.map((w) => w.stop()));
    this.etcd?.close();
  }

  private probeAll(): void {
    const seen = new Set<string>();
    for (const t of this.gateways.values())
      for (const l of t.record.listeners) {
        const key = `${t.record.address}:${l.listenPort}`;
        if (seen.has(key)) continue;
        seen.add(key);
        if (this.probing.has(key)) continue;
        this.probing.add(key);
        void probeTcp(t.record.address, l.listenPort, this.probeTimes).then((failure) => {
          this.probing.delete(key);
          // a listener removed while its probe ran: a stale result must not come back with it
          if (this.stopped || !this.listening.has(key)) return;
          const before = this.health.get(key);
          const after = listenerHealth(before, failure);
          if (before?.healthy !== after.healthy) this.log.info({ gateway: key, cluster: t.record.cluster, healthy: after.healthy, failure }, 'gateway health changed');
          this.health.set(key, after);
        });
      }
    this.listening = seen;
    for (const k of [...this.health.keys()]) if (!seen.has(k)) this.health.delete(k);
  }

  /** The region of a client address, if configured. */
  regionOf(ip: string): string | undefined {
    const plain = unmappedIPv4(ip);
    let p: Prefix;
    try {
      p = parsePrefix(plain.includes(':') ? `${plain}/128` : `${plain}/32`);
    } catch {
      return undefined;
    }
    for (const [r, list] of this.cfg.regions) if (list.some((x) => prefixesOverlap(x, p))) return r;
    return undefined;
  }

  /** Listeners probed now, by health (for the metrics). */
  listenerHealth(): { healthy: number; unhealthy: number } {
    let healthy = 0;
    for (const h of this.health.values()) if (h.healthy) healthy++;
    return { healthy, unhealthy: this.listening.size - healthy };
  }

  /** Healthy gateways for a service, the client's region first (then by cluster). */
  targets(service: string, clientRegion?: string): GatewayRecord[] {
    const out: GatewayRecord[] = [];
    for (const t of this.gateways.values()) {
      const l = t.record.listeners.find((x) => x.service === service);
      if (l && this.health.get(`${t.record.address}:${l.listenPort}`)?.healthy) out.push(t.record);
    }
    const rank = (g: GatewayRecord) => (clientRegion !== undefined && g.region === clientRegion ? 0 : 1);
    return out.sort((a, b) => rank(a) - rank(b) || (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : a.node < b.node ? -1 : 1));
  }

  answer(q: Question, from: RemoteInfo): Answer {
    const empty: Answer = { rcode: 0, answers: [], additionals: [], authorities: [] };
    const name = q.name.toLowerCase().replace(/\.$/, '');
    const service = this.cfg.names.get(name);
    if (!service) return { ...empty, rcode: RCODE_REFUSED };
    const gws = this.targets(service, this.regionOf(from.address));
    if (gws.length === 0) return { ...empty, rcode: RCODE_SERVFAIL };
    const want6 = q.type === 'AAAA';
    if (q.type !== 'A' && q.type !== 'AAAA') return empty;
    const answers = gws
      .filter((g) => g.address.includes(':') === want6)
      .map((g) => (want6 ? { type: 'AAAA' as const, name, ttl: this.cfg.ttl, data: g.address } : { type: 'A' as const, name, ttl: this.cfg.ttl, data: g.address }));
    return { ...empty, answers };
  }
}

export function loadGatewayDnsConfig(path: string): GatewayDnsConfig {
  return parseGatewayDnsConfig(readConfigFile(path));
}
