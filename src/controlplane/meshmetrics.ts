/**
 * Prometheus metrics of one kvstoremesh process (prom-client): its own failures, which no status record carries
 * (a status record is per remote, and a remote no longer connected has none). The per-remote view (connected,
 * entries, relists, rejections) is in wiremesh/mesh/v1/status/<remote> and exported by every agent.
 * Read at scrape time from KVStoreMesh; served by `wiremesh kvstoremesh --metrics <address:port>`. Names and
 * labels: docs/metrics.md.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { KVStoreMesh } from './kvstoremesh.js';
import { MAX_ABANDONED_SWEEPS, SWEEP_DEADLINE_MS } from '../identity/allocator.js';

/** What a scrape reads of KVStoreMesh. */
export type MeshMetricsSource = Pick<KVStoreMesh, 'failures' | 'pending' | 'statusPutMs' | 'lateWrites' | 'rejections' | 'identitySweeps'>;

/** failures key → the `what` label of wiremesh_kvstoremesh_failures_total. */
const FAILURES: Array<[keyof KVStoreMesh['failures'], string]> = [
  ['chain', 'remote-change'],
  ['status', 'status-pass'],
  ['statusPut', 'status-put'],
  ['start', 'replication-start'],
  ['lease', 'lease'],
  ['fenced', 'fenced'],
  ['unfenced', 'unfenced'],
];

export class KVStoreMeshMetrics {
  readonly registry = new Registry();

  constructor(cluster: string, mesh: MeshMetricsSource) {
    this.registry.setDefaultLabels({ cluster });
    collectDefaultMetrics({ register: this.registry, prefix: 'wiremesh_kvstoremesh_process_' });
    const registers = [this.registry];
    new Counter({
      name: 'wiremesh_kvstoremesh_failures_total',
      help: `This kvstoremesh's failures, each logged and retried: remote-change (a start/stop/purge step), status-pass, status-put (one transaction of the statuses a pass changed, failed or past its ${mesh.statusPutMs / 1000} s deadline), replication-start, lease (lost or not granted: the local etcd down), fenced (a replication's write refused by its purge fence: a purge landed after it began; started again), unfenced (a purge or replication start run without the purge fence: the etcd role lacks the mesh/v1/epochs/ grant; run clustermesh enable again).`,
      labelNames: ['what'],
      registers,
      collect() {
        // prom-client counters only go up by inc(): the totals kept by KVStoreMesh are set with reset() + inc()
        this.reset();
        for (const [k, what] of FAILURES) this.inc({ what }, mesh.failures[k]);
      },
    });
    new Counter({
      name: 'wiremesh_kvstoremesh_late_writes_total',
      help: "Transactions of the remotes' mirror writes to the local etcd given up on past their deadline (the local etcd did not answer in time): not cancelled, they may still land; their writes are done again once they settled.",
      registers,
      collect() {
        this.reset();
        this.inc(mesh.lateWrites);
      },
    });
    new Counter({
      name: 'wiremesh_kvstoremesh_rejected_records_total',
      help: 'Records this kvstoremesh refused, by the cluster the key named, record type and reason: the remotes\' (also in each remote\'s status) and its own cluster\'s (the identity collector\'s sweeps, counted once per sweep that lists them).',
      labelNames: ['origin', 'type', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const r of mesh.rejections.rows()) this.inc({ origin: r.origin, type: r.type, reason: r.reason }, r.count);
      },
    });
    new Counter({
      name: 'wiremesh_kvstoremesh_identity_sweeps_total',
      help: `The identity collector's sweeps of this cluster's identities, by result: done, failed (an etcd call failed; logged), timed-out (given up on: one etcd call past its ${SWEEP_DEADLINE_MS / 1000} s deadline, its answer ignored, the deletes done before it kept; logged), skipped (due while one still ran, or while ${MAX_ABANDONED_SWEEPS} sweeps given up on still waited for etcd; logged).`,
      labelNames: ['result'],
      registers,
      collect() {
        this.reset();
        const s = mesh.identitySweeps;
        for (const [result, n] of [['done', s.done], ['failed', s.failed], ['timed-out', s.timedOut], ['skipped', s.skipped]] as const) this.inc({ result }, n);
      },
    });
    new Gauge({
      name: 'wiremesh_kvstoremesh_identity_sweeps_waiting',
      help: `Identity sweeps given up on (or cut off by a stop) whose etcd call has not settled yet; at ${MAX_ABANDONED_SWEEPS}, due sweeps are skipped.`,
      registers,
      collect() {
        this.set(mesh.identitySweeps.abandoned);
      },
    });
    new Gauge({
      name: 'wiremesh_kvstoremesh_pending_retries',
      help: 'Remotes waiting for a retry: purge (a disconnected remote whose state is not yet deleted) or start (a replication whose start failed).',
      labelNames: ['what'],
      registers,
      collect() {
        const p = mesh.pending();
        this.set({ what: 'purge' }, p.unpurged);
        this.set({ what: 'start' }, p.startRetries);
      },
    });
  }

  /** The exposition text. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
