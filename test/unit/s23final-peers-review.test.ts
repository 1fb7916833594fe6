// Review of s23final's removePeer change (src/agent/peers.ts: the address handover last, ed12f5c). A handover whose
// programming throws (a device call failing once, as s23node-peers-review injects) now leaves the removed peer gone
// everywhere, as intended. What that fix left (all four failed at 0a43c0d and with ed12f5c's parent's peers.ts: older
// than the change; fixed since (PeerReconciler.step): a peer whose step throws fails alone, the pass makes every other
// change and then throws, the next pass is a full one that programs the failed peers again, and a queued pass that
// threw is retried):
// - a key change (unchanged() -> removePeer -> upsertPeer) whose handover throws: the pass ends before the new key is
//   added and reconcile() already cleared `dirty`, so no later pass adds it (only a relist or an unrelated full pass);
// - the same in a full pass: one removal's handover throwing drops every other change of that pass;
// - upsertPeer has the same shape the fix removed from removePeer: a record change whose handover throws leaves
//   `peers` holding the new record but the device the old allowed IPs; the next pass reads it as unchanged;
// - the node that took the address over: addressClaims says it holds it, its allowed IPs never get it.
// Oracle: the reconciler's own `peers` and records (what the device must hold after a pass that did not throw).
import { describe, expect, it, vi } from 'vitest';
import { stateKey } from '../../src/controlplane/keys.js';
import type { NodeRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PeerReconciler, type LocalNode } from '../../src/agent/peers.js';
import { RouteTable } from '../../src/agent/routetable.js';
import { PolicyDatapath } from '../../src/policy/datapath.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { formatPrefix, type Prefix } from '../../src/net/ip.js';

const KEY = (i: number): string => Buffer.alloc(32, i + 1).toString('base64');
const SHARED = '198.18.0.1';
const me: LocalNode = { cluster: 'c1', node: 'n0', addresses: ['198.18.9.1'], podCIDRs: ['100.64.0.0/24'] };
const rec = (name: string, key: string, pods: string[], addresses = [SHARED]): NodeRecord => ({ cluster: 'c1', clusterId: 1, name, addresses, port: 51820, publicKey: key, podCIDRs: pods, bootId: '1' });
const k = (name: string): string => stateKey('nodes', 'c1', name);

/** A reconciler over a real device whose setPeerAllowedIPs throws once for the peer `failFor` names (armed later). */
function world() {
  const dev = new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
  dev.setPrivateKey(Buffer.alloc(32, 99));
  const allowed = new Map<number, string[]>(); // by peer id: the last allowed IPs the device was given
  const real = dev.setPeerAllowedIPs.bind(dev);
  let failFor: number | undefined;
  dev.setPeerAllowedIPs = (p, pf: Prefix[]) => {
    if (p.id === failFor) {
      failFor = undefined;
      throw new Error('injected once');
    }
    real(p, pf);
    allowed.set(p.id, pf.map((x) => formatPrefix(x)).sort());
  };
  const dp = new PolicyDatapath(new FakeDevice(), me.cluster, me.node, { defaultLocalCluster: true }, silentLogger);
  dp.setNode(`${me.cluster}/${me.node}`, me.addresses);
  const routes = new RouteTable('wm0', () => Promise.resolve({ failed: new Map() }), silentLogger);
  const r = new PeerReconciler({ me, dev, routes, policy: dp, podSpace: () => [], peersChanged: () => {}, publishRelay: () => {}, programmed: () => {}, log: silentLogger });
  const arm = (id: string): void => {
    failFor = r.peers.get(id)!.peer.id;
  };
  /** Allowed IPs the device holds for node `id`'s peer, and what the reconciler's state says they should be. */
  const check = (id: string): void => {
    const st = r.peers.get(id)!;
    const holds = (r as unknown as { holds(id: string, a: string): boolean }).holds.bind(r);
    const want = [...st.routes, ...st.record.addresses.filter((a) => holds(id, a)).map((a) => `${a}/32`)].sort();
    expect(allowed.get(st.peer.id), `${id}'s allowed IPs`).toEqual(want);
  };
  return { dev, r, arm, check };
}

/** n1 and n2 both name SHARED: n1 holds it, n2 waits for it. */
function sharing(): ReturnType<typeof world> {
  const w = world();
  w.r.setNodeRecord(k('n1'), rec('n1', KEY(0), ['100.65.1.0/24']));
  w.r.setNodeRecord(k('n2'), rec('n2', KEY(1), ['100.65.2.0/24']));
  w.r.reconcile();
  return w;
}

describe('s23final review: a handover that throws once (removePeer last, ed12f5c)', () => {
  it('a key change whose handover throws: the next pass adds the new key (dirty was cleared by the failed pass)', () => {
    const w = sharing();
    w.arm('c1/n2'); // n1 holds SHARED; n2 waits for it
    w.r.setNodeRecord(k('n1'), rec('n1', KEY(5), ['100.65.1.0/24'])); // n1's key rotated
    expect(() => w.r.reconcile()).toThrow('injected once');
    w.r.reconcile(); // the agent's next pass (nothing new came in)
    expect(w.r.peers.get('c1/n1')?.record.publicKey, 'n1 a peer again').toBe(KEY(5));
    expect(w.dev.getPeer(Buffer.from(KEY(5), 'base64')), 'the device holds the new key').toBeDefined();
  });

  it('a full pass whose first removal hands over and throws: the other changes of that pass are made by the next', () => {
    const w = sharing();
    w.arm('c1/n2');
    w.r.setNodeRecord(k('n1'), undefined);
    w.r.setNodeRecord(k('n3'), rec('n3', KEY(2), ['100.65.3.0/24'], ['198.18.0.3']));
    w.r.setRelayEnabled(false); // a full pass ('all')
    expect(() => w.r.reconcile()).toThrow('injected once');
    w.r.reconcile();
    expect(w.r.peers.has('c1/n3'), 'n3 a peer').toBe(true);
    expect(w.dev.getPeer(Buffer.from(KEY(2), 'base64'))).toBeDefined();
  });

  it('upsertPeer: a record change whose handover throws leaves no peer programmed with its old record', () => {
    const w = sharing();
    w.arm('c1/n2');
    // n1 moves: a new address and a new pod CIDR; SHARED goes to n2, whose programming throws
    const moved = rec('n1', KEY(0), ['100.65.7.0/24'], ['198.18.0.7']);
    w.r.setNodeRecord(k('n1'), moved);
    expect(() => w.r.reconcile()).toThrow('injected once');
    w.r.setNodeRecord(k('n1'), structuredClone(moved)); // even a relist's copy: read as unchanged
    w.r.reconcile();
    w.check('c1/n1');
  });

  it('the node that took the address over gets it in its allowed IPs though its programming threw once', () => {
    const w = world();
    w.r.setNodeRecord(k('n1'), rec('n1', KEY(0), ['100.65.1.0/24']));
    const n2 = rec('n2', KEY(1), ['100.65.2.0/24']);
    w.r.setNodeRecord(k('n2'), n2);
    w.r.reconcile();
    w.arm('c1/n2');
    w.r.setNodeRecord(k('n1'), undefined);
    expect(() => w.r.reconcile()).toThrow('injected once');
    w.r.setNodeRecord(k('n2'), structuredClone(n2));
    w.r.reconcile();
    expect(w.r.peers.has('c1/n1')).toBe(false);
    w.check('c1/n2');
  });

  it('(held) no failure: a key change keeps the device and routes in step, and a removal hands the address over', () => {
    const w = sharing();
    w.r.setNodeRecord(k('n1'), rec('n1', KEY(5), ['100.65.1.0/24']));
    w.r.reconcile();
    expect(w.dev.getPeer(Buffer.from(KEY(0), 'base64'))).toBeUndefined();
    w.check('c1/n1');
    w.check('c1/n2');
    w.r.setNodeRecord(k('n2'), undefined);
    w.r.reconcile();
    w.check('c1/n1');
  });

  it('a peer whose programming keeps throwing fails alone: every other change of each pass is made', () => {
    const w = sharing();
    w.r.setNodeRecord(k('n2'), rec('n2', KEY(1), ['100.65.2.0/24', '100.65.9.0/24'])); // its upsert throws
    w.r.setNodeRecord(k('n3'), rec('n3', KEY(2), ['100.65.3.0/24'], ['198.18.0.3']));
    for (let i = 0; i < 3; i++) {
      w.arm('c1/n2');
      expect(() => w.r.reconcile()).toThrow('injected once');
      expect(w.r.peers.has('c1/n3'), 'n3 a peer').toBe(true);
      w.check('c1/n3');
      w.check('c1/n1');
    }
    w.r.reconcile(); // the device takes it now: n2 programmed again though its record did not change since
    w.check('c1/n2');
  });

  it('a queued pass that throws is retried after 1 s and gives the waiting node the address', async () => {
    vi.useFakeTimers({ toFake: ['setImmediate', 'setTimeout', 'clearTimeout'] });
    try {
      const w = sharing();
      await vi.advanceTimersByTimeAsync(0); // the passes the records queued
      w.arm('c1/n2');
      w.r.setNodeRecord(k('n1'), undefined); // queued: its handover to n2 throws once
      await vi.advanceTimersByTimeAsync(0);
      expect(w.r.peers.has('c1/n1')).toBe(false);
      expect(() => w.check('c1/n2'), 'n2 not programmed yet').toThrow();
      await vi.advanceTimersByTimeAsync(1000); // the retry, with no new input: it queues a pass
      await vi.runOnlyPendingTimersAsync(); // which runs
      w.check('c1/n2');
      w.r.stop();
    } finally {
      vi.useRealTimers();
    }
  });
});
