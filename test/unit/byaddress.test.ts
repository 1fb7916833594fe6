// The latest endpoint record naming an address, found through the ipcache's
// owners and a list only for addresses several records name
// (src/policy/byaddress.ts), against the map of every address it replaced
// (the oracle below, as PolicyDatapath kept it at commit 102da25), on seeded
// random sequences of records coming, changing address and going.
import { describe, expect, it } from 'vitest';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { silentLogger } from '../../src/log.js';
import type { EndpointRecord } from '../../src/controlplane/types.js';
import type { EndpointsByAddress } from '../../src/policy/byaddress.js';
import { prng } from '../helpers/prng.js';

/** PolicyDatapath's former endpointsByIp with its records (upsert/remove as it did them). */
class Oracle {
  readonly records = new Map<string, EndpointRecord>();
  readonly byIp = new Map<string, string | string[]>();
  upsert(key: string, rec: EndpointRecord): void {
    const old = this.records.get(key);
    if (old && old.ip !== rec.ip) this.remove(key);
    this.records.set(key, rec);
    const at = this.byIp.get(rec.ip) ?? key;
    this.byIp.set(rec.ip, at === key ? at : [...(typeof at === 'string' ? [at] : at).filter((k) => k !== key), key]);
  }
  remove(key: string): void {
    const old = this.records.get(key);
    if (!old) return;
    this.records.delete(key);
    const at = this.byIp.get(old.ip);
    const rest = typeof at === 'string' ? (at === key ? [] : [at]) : (at ?? []).filter((k) => k !== key);
    if (rest.length) this.byIp.set(old.ip, rest.length === 1 ? rest[0]! : rest);
    else this.byIp.delete(old.ip);
  }
  at(ip: string): EndpointRecord | undefined {
    const at = this.byIp.get(ip);
    return at === undefined ? undefined : this.records.get(typeof at === 'string' ? at : at.at(-1)!);
  }
}

// one address in two spellings (records carry canonical text; the index answers by exact text either way)
const IPS = ['100.66.0.1', '100.66.0.2', '100.66.0.3', 'fd65::1', 'FD65::1'];

function run(seed: number, steps: number): void {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const dp = new PolicyDatapath(new FakeDevice(), 'c1', 'n1', { defaultLocalCluster: true }, silentLogger);
  const index: Pick<EndpointsByAddress, 'at' | 'all'> = dp.byAddress;
  const o = new Oracle();
  const keys = Array.from({ length: 8 }, (_, i) => `cilium/state/ip/v2/c2/n${i % 3}/k${i}`);
  for (let step = 0; step < steps; step++) {
    const key = pick(keys);
    if (rnd() < 0.65) {
      const rec = { ip: pick(IPS), cluster: 'c2', node: pick(['n1', 'n2']), namespace: 'x', name: `p${step}`, labels: {}, identity: pick([undefined, 0x20101, 0x20102]) } as EndpointRecord;
      dp.upsertEndpoint(key, rec, undefined);
      o.upsert(key, rec);
    } else {
      dp.removeEndpoint(key, undefined);
      o.remove(key);
    }
    for (const ip of IPS) {
      expect(index.at(ip)?.name, `seed ${seed} step ${step} ${ip}`).toBe(o.at(ip)?.name);
      // every record naming it (registration's address conflicts), against a walk of the oracle's records
      const all = index.all(ip).map((r) => r.name).sort();
      expect(all, `seed ${seed} step ${step} ${ip}: all`).toEqual([...o.records.values()].filter((r) => r.ip === ip).map((r) => r.name).sort());
    }
  }
}

describe('the latest endpoint record naming an address', () => {
  it('agrees with a map of every address on random sequences', () => {
    for (let seed = 1; seed <= 60; seed++) run(seed, 400);
  });
});
