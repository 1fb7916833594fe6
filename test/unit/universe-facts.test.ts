// The identity universe's endpoint facts read from the data path's endpoint
// records (src/policy/compile.ts, src/policy/datapath.ts) against the table of
// its own it had before (the straightforward oracle below: the former
// setEndpoint fed as the data path fed it), on seeded random sequences: the
// same endpoints by identity, in the same order, and the same "changed" answers.
import { describe, expect, it } from 'vitest';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { silentLogger } from '../../src/log.js';
import type { EndpointFacts } from '../../src/policy/compile.js';
import type { EndpointRecord } from '../../src/controlplane/types.js';
import { prng } from '../helpers/prng.js';

/** The universe's former table and its setEndpoint, as the data path fed it (commit 102da25). */
class OracleFacts {
  readonly facts = new Map<string, EndpointFacts>();
  set(key: string, rec: EndpointRecord | null): boolean {
    const f = rec?.identity === undefined ? null : rec.ports ? (rec as EndpointFacts) : { identity: rec.identity, ip: rec.ip, ports: [] };
    const old = this.facts.get(key);
    if (!f) {
      if (!old) return false;
      this.facts.delete(key);
    } else {
      if (old && old.identity === f.identity && old.ip === f.ip && JSON.stringify(old.ports) === JSON.stringify(f.ports)) return false;
      this.facts.set(key, f);
    }
    return true;
  }
  byIdentity(): Array<[number, Array<{ identity: number; ip: string; ports: unknown }>]> {
    const m = new Map<number, EndpointFacts[]>();
    for (const f of this.facts.values()) m.set(f.identity, [...(m.get(f.identity) ?? []), f]);
    return [...m].map(([id, l]) => [id, l.map((f) => ({ identity: f.identity, ip: f.ip, ports: f.ports }))]);
  }
}

const PORTS = [undefined, [{ name: 'http', containerPort: 8080, protocol: 'TCP' as const }], [{ name: 'dns', containerPort: 53, protocol: 'UDP' as const }], []];

function run(seed: number, steps: number): void {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const dp = new PolicyDatapath(new FakeDevice(), 'c1', 'n1', { defaultLocalCluster: true }, silentLogger);
  const oracle = new OracleFacts();
  const records = new Map<string, EndpointRecord>(); // what dp holds, to feed the oracle as the data path did
  const changed: boolean[] = [];
  const u = dp.universe;
  const inner = u.endpointChanged.bind(u);
  u.endpointChanged = (a, b) => {
    const r = inner(a, b);
    changed.push(r);
    return r;
  };
  const keys = Array.from({ length: 12 }, (_, i) => `cilium/state/ip/v2/c2/n${i % 3}/100.66.0.${i}`);
  for (let step = 0; step < steps; step++) {
    const key = pick(keys);
    const want: boolean[] = [];
    changed.length = 0;
    if (rnd() < 0.7) {
      const ip = pick(['100.66.0.1', '100.66.0.2', '100.66.0.3', '100.66.0.4']);
      const rec = { ip, cluster: 'c2', node: 'n1', namespace: 'x', name: 'p', labels: {}, identity: pick([undefined, 0x20101, 0x20102, 0x20103]), ports: pick(PORTS) } as EndpointRecord;
      const old = records.get(key);
      if (old && old.ip !== rec.ip) want.push(oracle.set(key, null));
      want.push(oracle.set(key, rec));
      records.set(key, rec);
      dp.upsertEndpoint(key, rec, undefined);
    } else {
      if (records.delete(key)) want.push(oracle.set(key, null));
      dp.removeEndpoint(key, undefined);
    }
    expect(changed, `seed ${seed} step ${step}`).toEqual(want);
    const got = [...u.endpointsByIdentity()].map(([id, l]) => [id, l.map((f) => ({ identity: f.identity, ip: f.ip, ports: f.ports }))]);
    expect(got, `seed ${seed} step ${step}`).toEqual(oracle.byIdentity());
  }
}

describe('universe endpoint facts from the data path records', () => {
  it('agree with the former table of their own on random sequences (order included)', () => {
    for (let seed = 1; seed <= 60; seed++) run(seed, 400);
  });

  it("a universe reading its caller's records refuses setEndpoint (it would write into the caller's map)", () => {
    const dp = new PolicyDatapath(new FakeDevice(), 'c1', 'n1', { defaultLocalCluster: true }, silentLogger);
    expect(() => dp.universe.setEndpoint('k', { identity: 0x20101, ip: '100.66.0.1', ports: [] })).toThrow(/reads its endpoints from its caller/);
    expect(dp.endpoints.size).toBe(0);
  });
});
