/**
 * What the agent watches in etcd, as a table: each row a key prefix and the
 * sink its records go to (decoded by their codec, checked against the cluster
 * the key names, and handed to admission, the peer reconciler, the policy or
 * service data path, or the agent's metrics state). The agent starts one
 * ListWatcher per row; the trust rows (pins, our cluster-config) first.
 */
import {
  cachePrefix,
  clusterConfigKey,
  pinnedKey,
  pinnedPrefix,
  remoteStatusPrefix,
  statePrefix,
  syncedPrefix,
  type StateType,
} from '../controlplane/keys.js';
import { decoded, refusedInto, type ListWatchSink } from '../controlplane/kvstore.js';
import type { CompactKeys } from '../controlplane/compactkeys.js';
import {
  clusterConfigCodec,
  endpointCodec,
  heartbeatCodec,
  identityCodec,
  namespaceCodec,
  nodeCodec,
  pinnedClusterCodec,
  policyCodec,
  RecordError,
  relayCodec,
  remoteStatusCodec,
  serviceCodec,
  stateLocation,
  type Codec,
  type PinnedCluster,
  type Rejections,
  type Trust,
} from '../controlplane/records/index.js';
import type { Labels } from '../identity/identity.js';
import { formatPrefix } from '../net/ip.js';
import type { Logger } from '../log.js';
import type { Manifest } from '../manifests/validate.js';
import type { Admission } from './admission.js';
import type { MetricsSnapshot } from './metrics.js';

/** One row of the table: records under `prefix` go to `sink`. */
export interface Watch {
  prefix: string;
  sink: ListWatchSink;
}

/** Where the watched records go. */
export interface WatchTargets {
  cluster: { name: string; id: number; maxConnectedClusters?: 255 | 511 };
  trust: Trust;
  rejections: Rejections;
  admission: Pick<Admission, 'upsert' | 'remove' | 'recheck'> & Partial<Pick<Admission, 'endpointKeys'>>;
  peers: { setSynced(cluster: string, synced: boolean): void; setRelayEnabled(on: boolean): void; queue(): void };
  /** Remote clusters' kvstoremesh heartbeats present in our cache: lag on arrival and arrival (metrics). */
  syncLag: Map<string, { lagMs: number; receivedAtMs: number }>;
  /** Our kvstoremesh's view of each remote (wiremesh/mesh/v1/status/). */
  remoteStatus: Map<string, MetricsSnapshot['remotes'][number]>;
  /** With policy on: policies, namespaces (their labels enter identities), trust changes. */
  policy?: {
    upsertPolicy(key: string, cluster: string, name: string, m: Manifest): void;
    removePolicy(key: string): void;
    policyTrustChanged(): void;
    setNamespace(name: string, labels: Labels | null): void;
  };
  /** With services on. */
  services?: { upsertRecord(key: string, cluster: string, m: Manifest): void; removeRecord(key: string): void };
  log: Logger;
}

/** Builds the sinks of one agent. */
class Sinks {
  constructor(private readonly t: WatchTargets) {}

  /**
   * A decoding sink for a state type: a cache/ record naming our own cluster is refused (only we speak for us).
   * `reborn` (ListWatchSink.upsert) reaches `upsert`: admission needs it.
   */
  state<T>(type: StateType, codec: Codec<T>, upsert: (k: string, cluster: string, name: string, v: T, reborn?: boolean) => void, remove: (k: string) => void, forms?: CompactKeys): ListWatchSink {
    const own = this.t.cluster.name;
    const rej = this.t.rejections;
    return decoded(codec, {
      upsert: (k, v, reborn, text = k) => {
        const loc = stateLocation(type, text);
        if (!loc) return;
        if (loc.cached && loc.cluster === own) {
          rej.add(new RecordError(codec.type, text, 'claim', `a cached record names this cluster (${own}): only its own agents speak for it`), loc.cluster);
          return false;
        }
        upsert(k, loc.cluster, loc.name, v, reborn);
      },
      remove,
    }, rej, (k) => stateLocation(type, k)?.cluster ?? '', forms); // the cluster each key names: the origin whose claims are checked
  }

  /** Records that go through admission (records/trust.ts, admission.ts) into the data path. */
  admit<T>(type: StateType, kind: Parameters<Admission['upsert']>[0], codec: Codec<T>): ListWatchSink {
    const a = this.t.admission;
    // endpoint keys held in admission's compact forms (ListWatchSink.forms) from the watch to the data path
    const forms = kind === 'endpoint' ? a.endpointKeys : undefined;
    return this.state(type, codec, (k, cluster, _n, v, reborn) => a.upsert(kind, k, cluster, v, reborn), (k) => a.remove(kind, k), forms);
  }

  /** Our own and the cached copies of a state type, into one sink. */
  both(type: StateType, sink: ListWatchSink): Watch[] {
    return [{ prefix: statePrefix(type, this.t.cluster.name), sink }, { prefix: cachePrefix(type), sink }];
  }

  /**
   * Pins: what we pinned about each remote. Every pin as stored; applied to
   * trust unless its id is taken (then retried when pins change); records of
   * the clusters touched are checked again (every cluster's when any pod or
   * underlay range changed).
   */
  pins(): Watch {
    const { trust, rejections: rej, admission } = this.t;
    const pins = new Map<string, PinnedCluster>();
    // Node addresses are refused inside any cluster's pod or underlay ranges: when a pin's ranges change, every
    // cluster's records can turn (an overlapping pin arriving later; pins change rarely).
    const ranges = () => [trust.facts(this.t.cluster.name)!, ...trust.pinned()].map((f) => `${f.name} ${f.podCIDRs.map(formatPrefix).join()} ${Array.isArray(f.underlay) ? f.underlay.map(formatPrefix).join() : f.underlay}`).sort().join(';');
    const apply = (changed: string) => {
      const touched = new Set([changed]);
      const before = ranges();
      if (!pins.has(changed)) trust.unpin(changed);
      for (const [name, p] of pins) {
        if (trust.holds(p)) continue;
        if (trust.facts(name)) trust.unpin(name); // changed: take the old pin out before the new one goes in
        const refused = trust.pin(p);
        if (refused) rej.add(new RecordError('pinned-cluster', pinnedKey(name), 'conflict', refused), name);
        touched.add(name);
      }
      if (ranges() !== before) for (const f of [trust.facts(this.t.cluster.name)!, ...trust.pinned()]) touched.add(f.name);
      for (const name of touched) admission.recheck(name);
      this.t.policy?.policyTrustChanged();
      this.t.peers.queue();
    };
    const name = (k: string) => k.slice(pinnedPrefix().length);
    return {
      prefix: pinnedPrefix(),
      sink: decoded(pinnedClusterCodec, {
        upsert: (_k, p) => {
          pins.set(p.name, p);
          apply(p.name);
        },
        remove: (k) => {
          pins.delete(name(k));
          apply(name(k));
        },
      }, rej, name),
    };
  }

  /** Our cluster-config: hub or not, our pod CIDRs (trust). */
  config(): Watch {
    const { cluster, trust, admission, peers, log } = this.t;
    const key = clusterConfigKey(cluster.name);
    return {
      prefix: key,
      sink: decoded(clusterConfigCodec, {
        upsert: (k, cfg) => {
          if (k !== key) return; // the prefix also matches longer names
          if (cfg.id !== cluster.id) log.error({ configured: cluster.id, etcd: cfg.id }, 'cluster id in node.yaml differs from the cluster-config in etcd');
          // Remote pins laid out otherwise than node.yaml says are refused by Trust (fail closed); say why here.
          if ((cfg.maxConnectedClusters ?? 255) !== (cluster.maxConnectedClusters ?? 255))
            log.error({ configured: cluster.maxConnectedClusters ?? 255, etcd: cfg.maxConnectedClusters ?? 255 }, 'maxConnectedClusters in node.yaml differs from the cluster-config in etcd');
          peers.setRelayEnabled(cfg.relay === true);
          trust.setLocalCIDRs(cfg.podCIDRs);
          trust.setLocalUnderlay(cfg.underlayCIDRs);
          // every cluster's nodes: an address inside our ranges is no other cluster's
          for (const f of [trust.facts(cluster.name)!, ...trust.pinned()]) admission.recheck(f.name);
        },
        remove: (k) => {
          if (k !== key) return;
          peers.setRelayEnabled(false); // CIDRs stay as they were: no reason to trust more
        },
      }, this.t.rejections),
    };
  }

  /** Every other prefix, in the order they are started. */
  records(): Watch[] {
    const t = this.t;
    const remote = (k: string) => k.slice(remoteStatusPrefix().length);
    const synced = (k: string) => k.slice(syncedPrefix().length).split('/')[0]!;
    const rows: Watch[] = [
      ...this.both('nodes', this.admit('nodes', 'node', nodeCodec)),
      {
        prefix: syncedPrefix(),
        // A remote's marker goes away when the cluster is disconnected; its
        // cached records are deleted by kvstoremesh at the same time. Only the key is read: what the store
        // refuses (not valid UTF-8) is counted as a sync-marker of the cluster it names, as the other sinks'.
        sink: { upsert: (k) => t.peers.setSynced(synced(k), true), remove: (k) => t.peers.setSynced(synced(k), false), refused: refusedInto(t.rejections, 'sync-marker', synced) },
      },
      ...this.both('ip', this.admit('ip', 'endpoint', endpointCodec)),
      { prefix: cachePrefix('relays'), sink: this.admit('relays', 'relay', relayCodec) },
      {
        prefix: cachePrefix('heartbeat'),
        // Leased at its origin: the key goes (and its copy here) when that kvstoremesh is gone. Its first arrival
        // is no lag sample (it was written at that kvstoremesh's start, maybe long before this cluster connected):
        // only a heartbeat seen rewritten is.
        sink: this.state('heartbeat', heartbeatCodec, (_k, c, _n, hb) => t.syncLag.set(c, { lagMs: t.syncLag.has(c) ? Math.max(0, Date.now() - hb.at) : NaN, receivedAtMs: Date.now() }), (k) => {
          const loc = stateLocation('heartbeat', k);
          if (loc) t.syncLag.delete(loc.cluster);
        }),
      },
      {
        prefix: remoteStatusPrefix(),
        sink: decoded(remoteStatusCodec, { upsert: (k, st) => t.remoteStatus.set(remote(k), st), remove: (k) => void t.remoteStatus.delete(remote(k)) }, t.rejections, remote),
      },
    ];
    const dp = t.policy;
    if (dp) {
      rows.push(
        ...this.both('identities', this.admit('identities', 'identity', identityCodec)),
        ...this.both('policies', this.state('policies', policyCodec, (k, c, n, m) => dp.upsertPolicy(k, c, n, m), (k) => dp.removePolicy(k))),
        {
          prefix: statePrefix('namespaces', t.cluster.name),
          sink: this.state('namespaces', namespaceCodec, (_k, _c, name, m) => dp.setNamespace(name, m.metadata.labels ?? {}), (k) => {
            const loc = stateLocation('namespaces', k);
            if (loc) dp.setNamespace(loc.name, null);
          }),
        },
      );
    }
    const svc = t.services;
    if (svc) rows.push(...this.both('services', this.state('services', serviceCodec, (k, c, _n, m) => svc.upsertRecord(k, c, m), (k) => svc.removeRecord(k))));
    return rows;
  }
}

/** The trust rows (pins, our cluster-config): read before any record, so records never meet a trust that is still empty. */
export function trustWatches(t: WatchTargets): Watch[] {
  const s = new Sinks(t);
  return [s.pins(), s.config()];
}

/** The record rows: nodes, sync markers, endpoints, relays, heartbeats, remotes' status; identities, policies, namespaces with policy; services. */
export function stateWatches(t: WatchTargets): Watch[] {
  return new Sinks(t).records();
}
