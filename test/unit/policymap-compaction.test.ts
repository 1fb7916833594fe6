// The native policy map (policymap.h) by delta, across many compactions,
// against a reference: seeded random policyMapUpdate calls (entries removed,
// groups grown, shrunk, emptied, duplicates, removes of absent entries) on the
// real addon, and after every call policyMapEntries must equal the reference's
// entries in lookup order. The reference also follows the map's slots (a
// group that grows moves to the end, the garbage goes at a compaction) so the
// test knows compactions happened: since compaction is a copy swapped in
// (PolicyEngine::compact), an entry lost or doubled by it shows here. The same
// deltas go to a testhooks PolicyProbe (an engine of its own), whose counters
// and slots show the native side compacting as the reference does.
import { describe, expect, it } from 'vitest';
import type { NativeDevice } from '../../src/native/binding.js';
import { decodePolicyRows, lookupOrder, PolicyAction, policyRows, type PolicyRowInput } from '../../src/native/rows.js';
import { nativeDevices } from '../helpers/native-devices.js';
import { prng } from '../helpers/prng.js';
import { testhooks } from '../../src/native/testhooks.js';

const newDevice = nativeDevices();
function device(): NativeDevice {
  const d = newDevice();
  d.enablePolicy();
  return d;
}

const same = (a: PolicyRowInput, b: PolicyRowInput) =>
  a.identity === b.identity && a.proto === b.proto && a.action === b.action && a.lo === b.lo && a.hi === b.hi && a.rule === b.rule;

/** PolicyMap::update's semantics, and its slot count (policymap.cc's set_group and compaction threshold). */
class ReferenceMap {
  groups = new Map<number, PolicyRowInput[]>();
  slots: number;
  compactions = 0;
  constructor(initial: PolicyRowInput[]) {
    for (const e of lookupOrder(initial)) this.groups.set(e.identity, [...(this.groups.get(e.identity) ?? []), e]);
    this.slots = initial.length;
  }
  get live(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.length;
    return n;
  }
  update(upserts: PolicyRowInput[], removes: PolicyRowInput[]): void {
    const next = new Map<number, PolicyRowInput[]>();
    const group = (id: number) => next.get(id) ?? next.set(id, [...(this.groups.get(id) ?? [])]).get(id)!;
    for (const r of removes) next.set(r.identity, group(r.identity).filter((e) => !same(e, r)));
    for (const u of upserts) group(u.identity).push(u);
    for (const [id, g] of next) {
      const old = this.groups.get(id)?.length ?? 0;
      if (g.length > old) this.slots += g.length; // moves to the end
      if (g.length) this.groups.set(id, lookupOrder(g));
      else this.groups.delete(id);
    }
    if (this.slots > 64 && this.slots > 2 * this.live) {
      this.slots = this.live;
      this.compactions++;
    }
  }
  entries(): PolicyRowInput[] {
    return [...this.groups.keys()].sort((a, b) => a - b).flatMap((id) => this.groups.get(id)!);
  }
}

describe('native policy map by delta across compactions, against a reference', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`random deltas (seed ${seed})`, () => {
      const rand = prng(seed);
      const int = (n: number) => Math.floor(rand() * n);
      const actions = [PolicyAction.Allow, PolicyAction.Deny, PolicyAction.Redirect];
      // identity 0 (any) among them: the wildcard group lives outside the identity index
      const row = (): PolicyRowInput => {
        const lo = int(3) === 0 ? 0 : 1000 + int(50);
        return { identity: int(8) === 0 ? 0 : 256 + int(40), proto: int(3) === 0 ? 0 : 6, action: actions[int(3)]!, lo, hi: lo === 0 ? 65535 : lo + int(3), rule: int(5) };
      };
      const initial = Array.from({ length: 60 }, row);
      const dev = device();
      dev.setEndpointPolicy(7, 300, policyRows(initial), null);
      const ref = new ReferenceMap(initial);
      const probe = new testhooks.PolicyProbe();
      probe.set(policyRows(initial));
      for (let step = 0; step < 1500; step++) {
        const current = ref.entries();
        const removes: PolicyRowInput[] = [];
        for (let i = int(4); i > 0; i--) removes.push(current.length && int(5) ? current[int(current.length)]! : row());
        // an identity's whole group now and then, as the agent rewrites one
        if (current.length && int(4) === 0) {
          const id = current[int(current.length)]!.identity;
          removes.push(...current.filter((e) => e.identity === id));
        }
        const upserts = Array.from({ length: int(6) }, row);
        expect(dev.policyMapUpdate(7, 'ingress', policyRows(upserts), policyRows(removes))).toBe(true);
        const slotsBefore = ref.slots;
        ref.update(upserts, removes);
        expect(decodePolicyRows(dev.policyMapEntries(7, 'ingress')!), `seed ${seed}, step ${step}`).toEqual(ref.entries());
        expect(probe.update(policyRows(upserts), policyRows(removes))).toBe(true);
        const s = probe.stats();
        // garbage stays bounded: at most the threshold (2 x live) plus what this delta wrote past it
        expect(s.slots, `seed ${seed}, step ${step}`).toBeLessThanOrEqual(Math.max(64, 2 * s.live) + Math.max(0, ref.slots - slotsBefore));
        expect({ slots: s.slots, live: s.live, compactions: s.compactions }).toEqual({ slots: ref.slots, live: ref.live, compactions: ref.compactions });
      }
      expect(ref.compactions).toBeGreaterThan(5);
      expect(probe.stats().dropped).toBe(0); // one writer: no compaction is stale
    });
  }
});
