/**
 * The full service recompute (the agent's algorithm before its endpoint
 * index): every endpoint re-indexed, every port's candidates rebuilt and
 * selected, on every change and every second. bench/services.ts times it as
 * the "before" beside the incremental ServiceDatapath, and
 * test/unit/services-incremental.test.ts uses it as the reference the
 * incremental tables must equal.
 */
import type { EndpointRecord } from '../src/controlplane/types.js';
import { silentLogger } from '../src/log.js';
import type { NativeDevice } from '../src/native/binding.js';
import type { NodeLiveness } from '../src/services/health.js';
import { indexEndpoints, servicePorts, type ClusterService } from '../src/services/service.js';
import { PortTables } from '../src/services/tables.js';

export interface ReferenceInputs {
  records: Iterable<ClusterService>;
  endpoints: Iterable<EndpointRecord>;
  /** WireGuard peer id of a node ("cluster/node"), if it is a peer now. */
  peerOf: (nodeId: string) => number | undefined;
  health: { get(id: string): NodeLiveness; watch(nodes: Map<string, number>): void };
}

export class FullRecompute {
  private readonly tables: PortTables;

  constructor(
    dev: Pick<NativeDevice, 'serviceUpsert' | 'serviceRemove'>,
    private readonly cluster: string,
    private readonly node: string,
    maglevTableSize: number,
  ) {
    this.tables = new PortTables(dev, cluster, maglevTableSize, silentLogger);
  }

  compute(input: ReferenceInputs): void {
    const self = `${this.cluster}/${this.node}`;
    const byName = new Map<string, ClusterService[]>();
    for (const d of input.records) {
      const k = `${d.namespace}/${d.name}`;
      let l = byName.get(k);
      if (!l) byName.set(k, (l = []));
      l.push(d);
    }
    const idx = indexEndpoints(input.endpoints);
    const views = [...byName.values()].flatMap((defs) => servicePorts(this.cluster, defs, idx));
    const watch = new Map<string, number>();
    for (const v of views)
      for (const b of v.backends) {
        const id = `${b.cluster}/${b.node}`;
        const peer = id === self ? undefined : input.peerOf(id);
        if (peer !== undefined) watch.set(id, peer);
      }
    input.health.watch(watch);
    // median probe RTT per cluster over the candidates (one sample per backend; this node: 0)
    const samples = new Map<string, number[]>();
    for (const v of views)
      for (const b of v.backends) {
        const id = `${b.cluster}/${b.node}`;
        const rtt = id === self ? 0 : input.health.get(id).rttMs;
        if (rtt === undefined) continue;
        let l = samples.get(b.cluster);
        if (!l) samples.set(b.cluster, (l = []));
        l.push(rtt);
      }
    const rtt = new Map<string, number>();
    for (const [c, l] of samples) rtt.set(c, l.sort((a, b) => a - b)[l.length >> 1]!);
    const alive = (id: string): boolean => id === self || (input.peerOf(id) !== undefined && input.health.get(id).alive);
    const seen = new Set<string>();
    for (const v of views) {
      seen.add(v.key);
      this.tables.install(v, v.backends.filter((b) => alive(`${b.cluster}/${b.node}`)), rtt);
    }
    for (const key of [...this.tables.keys()]) if (!seen.has(key)) this.tables.uninstall(key);
  }
}
