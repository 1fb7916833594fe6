// Affinity "nearest" through the whole chain the agent runs: the device's probe answers (FakeDevice, whose probe
// monitor mirrors native/src/wireguard/probe_monitor.h), NodeHealth, ServiceDatapath's RTT per cluster and
// selectBackends with its hysteresis, installed in the device's table. A loaded host's own queueing delays single
// probes (or every probe for a few seconds) by tens of ms: that must not move new flows to a cluster whose path is
// 40 ms slower (the netns "affinity nearest" test failed so under CI load), while a real change of the path delay
// still moves them once the window has seen it.
import { describe, expect, it } from 'vitest';
import type { EndpointRecord } from '../../src/controlplane/types.js';
import { silentLogger } from '../../src/log.js';
import { AFFINITY_ANNOTATION, GLOBAL_ANNOTATION, validateManifest } from '../../src/manifests/validate.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { RTT_WINDOW_MS } from '../../src/native/rttwindow.js';
import { ServiceDatapath } from '../../src/services/datapath.js';
import { PROBE_INTERVAL_MS } from '../../src/services/health.js';
import { EndpointRecordsMap } from '../../src/controlplane/endpointrecords.js';

const PEER = { 'c2/n1': 2, 'c3/n1': 3 } as const;
const POD = { c2: '100.66.0.1', c3: '100.67.0.1' } as const;

function mesh() {
  let now = 1_000_000;
  const dev = new FakeDevice({ now: () => now });
  for (const p of Object.values(PEER)) dev.upsertPeer(p);
  const rtt = new Map<number, (t: number) => number>(); // peer -> RTT µs of an answer at t
  dev.onProbe = (ids) => {
    for (const id of ids) if (rtt.has(id)) dev.answerProbe(id, rtt.get(id)!(now));
  };
  const endpoints = new EndpointRecordsMap();
  const dp = new ServiceDatapath(dev, 'fake0', 'c1', 'n1', { maglevTableSize: 251, routeVip: (_vip, add) => add, endpoints }, silentLogger, (id) => PEER[id as keyof typeof PEER]);
  const manifest = validateManifest({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'web', namespace: 'shop', annotations: { [GLOBAL_ANNOTATION]: 'true', [AFFINITY_ANNOTATION]: 'nearest' } }, spec: { clusterIP: '100.127.0.1', selector: { app: 'web' }, ports: [{ name: 'http', port: 80 }] } });
  for (const c of ['c1', 'c2', 'c3']) dp.upsertRecord(`cilium/state/services/v1/${c}/shop/web`, c, manifest);
  for (const c of ['c2', 'c3'] as const) {
    const rec: EndpointRecord = { ip: POD[c], cluster: c, node: 'n1', namespace: 'shop', name: `w-${c}`, labels: { app: 'web' } };
    endpoints.set(`state/ip/v2/${c}/n1/${POD[c]}`, rec);
    dp.upsertEndpoint(`state/ip/v2/${c}/n1/${POD[c]}`, rec, undefined);
  }
  dp.compute();
  /** The cluster whose backend new flows pick (weight > 0 in the installed table). */
  const selected = (): string[] => {
    const t = [...dev.services.values()][0];
    return (t?.backends ?? []).filter((b) => b.weight > 0).map((b) => (b.address === POD.c2 ? 'c2' : 'c3'));
  };
  /** Runs ms of 200 ms rounds (probe answers, the agent's drain and recompute); the selection after each. */
  const run = (ms: number): string[] => {
    const out: string[] = [];
    for (let t = 0; t < ms; t += PROBE_INTERVAL_MS) {
      now += PROBE_INTERVAL_MS;
      dp.health.tick();
      dp.compute();
      out.push(selected().join(','));
    }
    return out;
  };
  return { rtt, run, now: () => now };
}

describe('affinity nearest on a loaded host', () => {
  it("spikes of our own queueing on the near cluster's probes do not flip the choice; a real path change does", () => {
    const m = mesh();
    m.rtt.set(PEER['c2/n1'], () => 1000); // c2 1 ms away
    m.rtt.set(PEER['c3/n1'], () => 41_000); // c3 41 ms away
    expect(m.run(3000).at(-1)).toBe('c2');
    // 30 s of load: every 5th probe to c2 delayed by 120 ms, three in a row every 2 s, and a 4 s run of them all
    const t0 = m.now();
    m.rtt.set(PEER['c2/n1'], (t) => {
      const s = t - t0;
      const spike = (s >= 10_000 && s < 14_000) || s % 1000 === 0 || s % 2000 < 600;
      return spike ? 121_000 : 1000;
    });
    expect(new Set(m.run(30_000))).toEqual(new Set(['c2']));
    // the path to c2 really becomes 80 ms: new flows move to c3 once the window has seen it
    m.rtt.set(PEER['c2/n1'], () => 81_000);
    const after = m.run(RTT_WINDOW_MS + 2000);
    const moved = after.indexOf('c3') * PROBE_INTERVAL_MS;
    expect(moved).toBeGreaterThan(0);
    expect(moved).toBeLessThanOrEqual(RTT_WINDOW_MS + PROBE_INTERVAL_MS);
    expect(after.slice(after.indexOf('c3'))).toEqual(after.slice(after.indexOf('c3')).map(() => 'c3'));
  });

  it('a faster path to the other cluster is taken at once (hysteresis still applies)', () => {
    const m = mesh();
    m.rtt.set(PEER['c2/n1'], () => 20_000);
    m.rtt.set(PEER['c3/n1'], () => 41_000);
    expect(m.run(3000).at(-1)).toBe('c2');
    m.rtt.set(PEER['c3/n1'], () => 17_000); // 15 % better: kept on c2 (20 % needed)
    expect(m.run(12_000).at(-1)).toBe('c2');
    m.rtt.set(PEER['c3/n1'], () => 5000);
    const after = m.run(2000);
    expect(after.indexOf('c3') * PROBE_INTERVAL_MS).toBeLessThanOrEqual(2 * PROBE_INTERVAL_MS);
  });
});
