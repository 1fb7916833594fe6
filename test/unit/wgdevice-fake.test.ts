// Two WireGuardDevices (the control half: Noise in noise.ts, timers in timers.ts) on linked in-memory data
// paths (FakeDevice + FakeNetwork), one fake clock, no root. Expectations come from the protocol
// (whitepaper §5.4, §6): a 148-byte initiation answered by a 92-byte response, crossed indices, the
// initiator's send key the responder's receive key and back, the responder's keypair in use only after the
// initiator's first transport message, a wrong static key or preshared key never yielding a session, and
// an unanswered initiation sent again after REKEY_TIMEOUT (5 s) plus at most 334 ms of jitter.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { linkFakeDevices, type FakeDatagram } from '../../src/native/fakenet.js';
import { dh, generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import type { Peer } from '../../src/wireguard/peer.js';

const A = { host: '198.18.0.1', port: 51820 };
const B = { host: '198.18.0.2', port: 51820 };
const INITIATION = 1;
const RESPONSE = 2;
const TRANSPORT = 4;

function rng(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const devices: WireGuardDevice<FakeDevice>[] = [];
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
});

function setup(o: { pskA?: Buffer; pskB?: Buffer; aThinksBIs?: Buffer } = {}) {
  const clock = { ms: 1_000_000 };
  const now = () => clock.ms;
  const fa = new FakeDevice({ port: A.port, now });
  const fb = new FakeDevice({ port: B.port, now });
  const net = linkFakeDevices(fa, fb, [A.host, B.host]);
  const a = new WireGuardDevice({ device: fa, now, tickMs: 0 });
  const b = new WireGuardDevice({ device: fb, now, tickMs: 0 });
  devices.push(a, b);
  a.setPrivateKey(generatePrivateKey());
  b.setPrivateKey(generatePrivateKey());
  const pb = a.addPeer(o.aThinksBIs ?? b.identity!.publicKey); // a's view of b
  const pa = b.addPeer(a.identity!.publicKey); // b's view of a: no endpoint, learnt from the initiation
  if (o.pskA) pb.setPresharedKey(o.pskA);
  if (o.pskB) pa.setPresharedKey(o.pskB);
  a.setPeerEndpoint(pb, B);
  const completed = { a: 0, b: 0 };
  a.on('handshake', () => completed.a++);
  b.on('handshake', () => completed.b++);
  const wire = (): Array<Pick<FakeDatagram, 'type' | 'fate'> & { from: string; to: string; bytes: number }> =>
    net.datagrams.map((d) => ({ type: d.type, fate: d.fate, from: d.from.host, to: d.to.host, bytes: d.msg.length }));
  return { clock, fa, fb, net, a, b, pa, pb, completed, wire };
}

describe('WireGuardDevice on linked FakeDevices', () => {
  it('completes a handshake: crossed indices, matching keys, and the responder confirmed by the first transport message', () => {
    const f = setup({ pskA: Buffer.alloc(32, 9), pskB: Buffer.alloc(32, 9) });
    f.a.initiate(f.pb);
    f.net.deliver();
    expect(f.wire()).toEqual([
      { type: INITIATION, fate: 'delivered', from: A.host, to: B.host, bytes: 148 },
      { type: RESPONSE, fate: 'delivered', from: B.host, to: A.host, bytes: 92 },
      // the initiator's keepalive: 16-byte header, empty payload, 16-byte tag
      { type: TRANSPORT, fate: 'delivered', from: A.host, to: B.host, bytes: 32 },
    ]);
    expect(f.completed).toEqual({ a: 1, b: 1 });
    // the responder answers where the initiation came from
    expect(f.pa.endpoint).toEqual(A);
    expect(f.fb.peer(f.pa.id).endpoint).toEqual(A);

    const [init, resp] = f.net.datagrams.map((d) => d.msg);
    const ka = f.fa.peer(f.pb.id).keypairs;
    const kb = f.fb.peer(f.pa.id).keypairs;
    expect(ka).toHaveLength(1);
    expect(kb).toHaveLength(1);
    // indices as the messages carry them: initiation sender = a's, response sender = b's, response receiver = a's
    expect(ka[0]!.localIndex).toBe(init!.readUInt32LE(4));
    expect(kb[0]!.localIndex).toBe(resp!.readUInt32LE(4));
    expect(resp!.readUInt32LE(8)).toBe(init!.readUInt32LE(4));
    expect(ka[0]!.remoteIndex).toBe(kb[0]!.localIndex);
    expect(kb[0]!.remoteIndex).toBe(ka[0]!.localIndex);
    expect([ka[0]!.initiator, kb[0]!.initiator]).toEqual([true, false]);
    expect(ka[0]!.sendKey.equals(kb[0]!.recvKey)).toBe(true);
    expect(ka[0]!.recvKey.equals(kb[0]!.sendKey)).toBe(true);
    expect(ka[0]!.sendKey.equals(ka[0]!.recvKey)).toBe(false);
    expect(ka[0]!.sendKey.every((x) => x === 0)).toBe(false);
    // both now send with it
    expect(f.fa.peer(f.pb.id).current).toBe(ka[0]);
    expect(f.fb.peer(f.pa.id).current).toBe(kb[0]);
  });

  it("keeps the responder's keypair unconfirmed until a transport message from the initiator arrives", () => {
    const f = setup();
    f.net.lose = (d) => d.type === TRANSPORT && f.net.datagrams.filter((x) => x.type === TRANSPORT).indexOf(d) === 0;
    f.a.initiate(f.pb);
    f.net.deliver();
    expect(f.wire().map((d) => [d.type, d.fate])).toEqual([[INITIATION, 'delivered'], [RESPONSE, 'delivered'], [TRANSPORT, 'lost']]);
    expect(f.completed).toEqual({ a: 1, b: 0 });
    expect(f.a.stats.handshakesCompleted).toBe(1);
    expect(f.b.stats.handshakesCompleted).toBe(0);
    // b derived its keys as the responder and handed them over as such: not to send with yet
    const kb = f.fb.peer(f.pa.id);
    expect(kb.keypairs.map((k) => k.initiator)).toEqual([false]);
    expect(kb.current).toBeNull();
    expect(kb.next).toBe(kb.keypairs[0]);
    // b's timers are not satisfied: no retransmit is armed on b (it did not initiate), and no completion
    expect(f.pa.timers.retransmitPending).toBe(false);
    // the initiator's next keepalive confirms it
    f.a.setPeerPersistentKeepalive(f.pb, 25);
    f.net.deliver();
    expect(f.wire().at(-1)).toMatchObject({ type: TRANSPORT, fate: 'delivered', from: A.host });
    expect(f.completed).toEqual({ a: 1, b: 1 });
    expect(kb.current).toBe(kb.keypairs[0]);
    expect(kb.next).toBeNull();
  });

  it('never completes with a wrong public key for the peer', () => {
    const f = setup({ aThinksBIs: publicFromPrivate(generatePrivateKey()) });
    f.a.initiate(f.pb);
    f.net.deliver();
    for (let i = 0; i < 3; i++) {
      f.clock.ms += 5_334;
      f.a.tick();
      f.net.deliver();
    }
    // b cannot open an initiation sealed to another key: nothing answers, four initiations went unanswered
    expect(f.wire().map((d) => [d.type, d.fate])).toEqual(Array(4).fill([INITIATION, 'delivered']));
    expect(f.b.stats.handshakesRejected).toBe(4);
    expect(f.completed).toEqual({ a: 0, b: 0 });
    expect(f.fa.peer(f.pb.id).keypairs).toEqual([]);
    expect(f.fb.peer(f.pa.id).keypairs).toEqual([]);
  });

  it('never completes with mismatched preshared keys: the initiator cannot authenticate the response', () => {
    const f = setup({ pskA: Buffer.alloc(32, 1), pskB: Buffer.alloc(32, 2) });
    f.a.initiate(f.pb);
    f.net.deliver();
    // the preshared key enters only the response's key schedule: b answers, a refuses the answer
    expect(f.wire().map((d) => [d.type, d.fate])).toEqual([[INITIATION, 'delivered'], [RESPONSE, 'delivered']]);
    expect(f.a.stats.handshakesRejected).toBe(1);
    for (let i = 0; i < 3; i++) {
      f.clock.ms += 5_334;
      f.a.tick();
      f.b.tick();
      f.net.deliver();
    }
    expect(f.wire().filter((d) => d.type === INITIATION)).toHaveLength(4);
    expect(f.wire().filter((d) => d.type === TRANSPORT)).toEqual([]);
    expect(f.completed).toEqual({ a: 0, b: 0 });
    expect(f.fa.peer(f.pb.id).keypairs).toEqual([]);
    // whatever b derived was never confirmed
    expect(f.fb.peer(f.pa.id).current).toBeNull();
  });

  it('sends the initiation again after REKEY_TIMEOUT (5 s + jitter) when the first is lost', () => {
    const f = setup();
    f.net.lose = (d) => d === f.net.datagrams[0];
    const t0 = f.clock.ms;
    f.a.initiate(f.pb);
    f.net.deliver();
    expect(f.wire().map((d) => [d.type, d.fate])).toEqual([[INITIATION, 'lost']]);
    f.clock.ms = t0 + 4_999;
    f.a.tick();
    expect(f.net.pending).toBe(0);
    expect(f.net.datagrams).toHaveLength(1);
    f.clock.ms = t0 + 5_000 + 334;
    f.a.tick();
    f.net.deliver();
    expect(f.wire().map((d) => [d.type, d.fate])).toEqual([[INITIATION, 'lost'], [INITIATION, 'delivered'], [RESPONSE, 'delivered'], [TRANSPORT, 'delivered']]);
    const [first, second] = f.net.datagrams.map((d) => d.msg);
    // a new handshake, not a copy: its own sender index and ephemeral key
    expect(second!.readUInt32LE(4)).not.toBe(first!.readUInt32LE(4));
    expect(second!.subarray(8, 40).equals(first!.subarray(8, 40))).toBe(false);
    expect(f.completed).toEqual({ a: 1, b: 1 });
    expect(f.fa.peer(f.pb.id).keypairs[0]!.localIndex).toBe(second!.readUInt32LE(4));
    // answered: nothing more to retransmit
    f.clock.ms += 10_000;
    f.a.tick();
    expect(f.net.pending).toBe(0);
  });
});

// The initiation's TAI64N timestamp comes from Date.now() (16.8 ms granularity): a fake wall clock, moved on by
// the tests, or a second initiation within the same tick would be refused as a replay.
function fakeWallClock(): void {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_700_000_000_000);
  });
  afterEach(() => {
    vi.useRealTimers();
  });
}

// The static-static DH (our static private key with the peer's static public key) is computed once per peer
// and kept, as wireguard-go does; it must follow both keys. A stale value makes the responder unable to open
// the initiation's timestamp, so the handshake fails; the recomputed one completes.
describe('precomputed static-static DH', () => {
  fakeWallClock();
  const handshakeOnce = (f: ReturnType<typeof setup>, from: WireGuardDevice<FakeDevice>, peer: Peer) => {
    f.clock.ms += 6_000; // past REKEY_TIMEOUT, so initiate() sends at once
    vi.setSystemTime(Date.now() + 6_000);
    from.initiate(peer);
    f.net.deliver();
  };

  it('is recomputed when the local private key changes (the old value fails, the new one completes)', () => {
    const f = setup();
    const old = Buffer.from(f.pb.handshake.precomputedStaticStatic!);
    const k2 = generatePrivateKey();
    f.a.setPrivateKey(k2);
    const fresh = f.pb.handshake.precomputedStaticStatic!;
    expect(fresh.equals(dh(k2, f.b.identity!.publicKey)!)).toBe(true);
    expect(fresh.equals(old)).toBe(false);
    // b is told a's new public key (peers are named by public key: a new peer)
    f.b.removePeer(f.pa.publicKey);
    f.b.addPeer(f.a.identity!.publicKey);
    // the stale value: b decrypts the new static key, then cannot open the timestamp
    f.pb.handshake.precomputedStaticStatic = old;
    handshakeOnce(f, f.a, f.pb);
    expect(f.b.stats.handshakesRejected).toBe(1);
    expect(f.completed).toEqual({ a: 0, b: 0 });
    // the recomputed value completes
    f.pb.handshake.precomputedStaticStatic = fresh;
    handshakeOnce(f, f.a, f.pb);
    expect(f.completed).toEqual({ a: 1, b: 1 });
  });

  it("is recomputed when a peer's public key changes (the peer under the old key never completes)", () => {
    const f = setup();
    handshakeOnce(f, f.a, f.pb);
    expect(f.completed).toEqual({ a: 1, b: 1 });
    const oldPeer = f.pb;
    f.b.setPrivateKey(generatePrivateKey());
    const newPeer = f.a.addPeer(f.b.identity!.publicKey);
    f.a.setPeerEndpoint(newPeer, B);
    expect(newPeer.handshake.precomputedStaticStatic!.equals(dh(f.a.identity!.privateKey, f.b.identity!.publicKey)!)).toBe(true);
    expect(newPeer.handshake.precomputedStaticStatic!.equals(oldPeer.handshake.precomputedStaticStatic!)).toBe(false);
    // b's peer entry for a survives its key change, recomputed against b's new key
    expect(f.pa.handshake.precomputedStaticStatic!.equals(dh(f.b.identity!.privateKey, f.a.identity!.publicKey)!)).toBe(true);
    handshakeOnce(f, f.a, oldPeer);
    expect(f.b.stats.handshakesRejected).toBe(1);
    expect(f.completed).toEqual({ a: 1, b: 1 });
    handshakeOnce(f, f.a, newPeer);
    expect(f.completed).toEqual({ a: 2, b: 2 });
  });
});


// tick() looks at the device's active peers and the peers whose timers were armed, not at every peer: on
// seeded random sequences of handshakes (some answered, most not), persistent keepalives, peer removals and
// clock steps, every peer a full scan finds armed is tracked, and a tick with nothing due leaves exactly those.
describe('the timers tick over armed peers only', () => {
  const armedByScan = (d: WireGuardDevice<FakeDevice>) => new Set([...d.peers.values()].filter((p) => p.timers.armed));
  it.each([1, 2, 3, 4])('tracks every armed peer, against a full scan (seed %i)', (seed) => {
    const rand = rng(seed);
    const f = setup();
    const extra: Peer[] = [];
    for (let step = 0; step < 400; step++) {
      const r = rand();
      if (r < 0.15) {
        // a peer that never answers (B does not know this key)
        const p = f.a.addPeer(generatePrivateKey());
        f.a.setPeerEndpoint(p, B);
        extra.push(p);
        f.a.initiate(p);
      } else if (r < 0.25 && extra.length) f.a.removePeer(extra.splice(Math.floor(rand() * extra.length), 1)[0]!.publicKey);
      else if (r < 0.35) f.a.setPeerPersistentKeepalive(rand() < 0.5 ? f.pb : (extra[Math.floor(rand() * extra.length)] ?? f.pb), rand() < 0.5 ? 0 : 25);
      else if (r < 0.45) f.a.initiate(f.pb);
      else if (r < 0.6) f.clock.ms += Math.floor(rand() * 60_000);
      else if (r < 0.75) f.net.deliver();
      else {
        f.a.tick();
        f.b.tick();
      }
      // b is the responder: its peer is armed by the session it derives, without initiating
      for (const d of [f.a, f.b]) for (const p of armedByScan(d)) expect(d.trackedArmedPeers.has(p)).toBe(true);
    }
    // nothing due at this instant after one tick: a second one keeps exactly the armed peers
    f.a.tick();
    f.a.tick();
    expect(new Set(f.a.trackedArmedPeers)).toEqual(armedByScan(f.a));
    expect(f.a.trackedArmedPeers.size).toBeLessThanOrEqual(f.a.peers.size);
  });
});

// A peer's handshake state and cookie generator are built when first needed (issue 16: most of an agent's peers
// never handshake). Built late, they must be what an eager build would hold: the identity and preshared key of
// that moment. Oracle (whitepaper §5.4.2–5.4.3): with both sides knowing each other's current static key, an
// initiation completes exactly when both hold the same preshared key (none = 32 zero bytes).
describe('handshake state built on first use', () => {
  fakeWallClock();

  it('an idle peer holds none; an initiation builds the initiator\'s and then the responder\'s', () => {
    const f = setup();
    const idle = Array.from({ length: 20 }, () => f.a.addPeer(publicFromPrivate(generatePrivateKey())));
    for (const p of idle) f.a.setPeerEndpoint(p, B);
    expect([f.pb, f.pa, ...idle].map((p) => p.hasHandshakeState)).toEqual(Array(22).fill(false));
    f.a.initiate(f.pb);
    expect([f.pb.hasHandshakeState, f.pa.hasHandshakeState]).toEqual([true, false]);
    f.net.deliver();
    expect([f.pb.hasHandshakeState, f.pa.hasHandshakeState]).toEqual([true, true]);
    expect(f.completed).toEqual({ a: 1, b: 1 });
    expect(idle.some((p) => p.hasHandshakeState)).toBe(false);
  });

  it('zeroing keys after 540 s wipes a built handshake state and builds none where there was none', () => {
    const f = setup();
    f.a.initiate(f.pb);
    f.net.deliver();
    // an idle peer whose key-zeroing timer is armed without any handshake (no built state to wipe)
    const idle = f.a.addPeer(publicFromPrivate(generatePrivateKey()));
    idle.timers.sessionDerived(f.clock.ms);
    f.a.setPeerPersistentKeepalive(idle, 0); // tracks it as armed, sends nothing
    f.clock.ms += 540_000 + 1;
    f.a.tick();
    expect([idle.timers.armed, idle.hasHandshakeState]).toEqual([false, false]);
    expect([f.pb.hasHandshakeState, f.pb.handshake.state]).toEqual([true, 'zeroed']);
  });

  it.each([1, 2, 3, 4, 5, 6])('completes exactly when the preshared keys match, across key changes before and after first use (seed %i)', (seed) => {
    const rand = rng(seed);
    const f = setup();
    let pa = f.pa;
    let pb = f.pb;
    const psk = { a: 0, b: 0 };
    let attempts = 0;
    for (let step = 0; step < 60; step++) {
      const r = rand();
      if (r < 0.15) {
        // a's new key: b is told (a peer is named by its key: a new peer, with b's preshared key for it)
        f.a.setPrivateKey(generatePrivateKey());
        f.b.removePeer(pa.publicKey);
        pa = f.b.addPeer(f.a.identity!.publicKey);
        if (psk.b) pa.setPresharedKey(Buffer.alloc(32, psk.b));
      } else if (r < 0.3) {
        f.b.setPrivateKey(generatePrivateKey());
        f.a.removePeer(pb.publicKey);
        pb = f.a.addPeer(f.b.identity!.publicKey);
        f.a.setPeerEndpoint(pb, B);
        if (psk.a) pb.setPresharedKey(Buffer.alloc(32, psk.a));
      } else if (r < 0.5) {
        psk.a = Math.floor(rand() * 3);
        pb.setPresharedKey(Buffer.alloc(32, psk.a));
      } else if (r < 0.7) {
        psk.b = Math.floor(rand() * 3);
        pa.setPresharedKey(Buffer.alloc(32, psk.b));
      } else {
        const before = { ...f.completed };
        f.clock.ms += 6_000; // past REKEY_TIMEOUT: initiate() sends at once
        vi.setSystemTime(Date.now() + 6_000); // a later TAI64N timestamp: not a replay
        f.a.initiate(pb);
        f.net.deliver();
        attempts++;
        const done = psk.a === psk.b ? 1 : 0;
        expect({ a: f.completed.a - before.a, b: f.completed.b - before.b }).toEqual({ a: done, b: done });
        expect(pb.hasHandshakeState).toBe(true);
      }
    }
    expect(attempts).toBeGreaterThan(5);
  });
});

// A mesh peer's endpoint roams only among its node record's addresses (roaming.ts; the FakeNetwork models the
// native half, roam.h): the control half's share is the handshake. Oracle: WireGuard's rule (whitepaper §2.1: the
// endpoint follows the source of authenticated messages, an initiation is answered at its source) for a peer
// without a roaming set; for one with a set, only sources whose address is in it move the endpoint.
describe('roaming sets', () => {
  fakeWallClock();
  const again = (f: ReturnType<typeof setup>) => {
    f.clock.ms += 6_000; // past REKEY_TIMEOUT and the flood guard
    vi.setSystemTime(Date.now() + 6_000);
    f.a.initiate(f.pb);
    f.net.deliver();
  };
  const OUTSIDE = '198.18.0.9';

  it('a peer with a set keeps its endpoint when a moves outside it (answered there), moves within it', () => {
    const f = setup();
    f.b.setPeerRoaming(f.pa, [A.host, '198.18.0.3']);
    f.a.initiate(f.pb);
    f.net.deliver();
    expect(f.fb.peer(f.pa.id).endpoint).toEqual(A);
    f.net.attach(f.fa, OUTSIDE); // a now sends from an address its record does not name
    f.fa.sendKeepalive(f.pb.id);
    f.net.deliver();
    expect(f.fb.peer(f.pa.id).endpoint).toEqual(A);
    expect(f.fb.counters().endpoint_roam_refused).toBe(1);
    again(f);
    expect(f.b.stats.endpointRoamsRefused).toBe(1);
    expect(f.pa.endpoint).toEqual(A);
    expect(f.fb.handshakesSent.at(-1)).toMatchObject(A); // the response went to A, not to the source
    f.net.attach(f.fa, '198.18.0.3');
    again(f);
    expect(f.pa.endpoint).toEqual({ host: '198.18.0.3', port: A.port });
    expect(f.b.stats.endpointRoamsRefused).toBe(1);
  });

  it('the fake, as native roam.h, counts only the first 4 addresses of a set', () => {
    const f = setup();
    f.a.initiate(f.pb);
    f.net.deliver();
    // the transport half straight on the fake device (WireGuardDevice trims to ROAM_MAX before): OUTSIDE fifth
    f.fb.setRoaming(f.pa.id, [A.host, '2001:db8::1', '2001:db8::2', '2001:db8::3', OUTSIDE]);
    f.net.attach(f.fa, OUTSIDE);
    f.fa.sendKeepalive(f.pb.id);
    f.net.deliver();
    expect(f.fb.peer(f.pa.id).endpoint).toEqual(A);
    expect(f.fb.counters().endpoint_roam_refused).toBe(1);
  });

  it('a peer without one (plain WireGuard) follows a anywhere', () => {
    const f = setup();
    f.a.initiate(f.pb);
    f.net.deliver();
    f.net.attach(f.fa, OUTSIDE);
    f.fa.sendKeepalive(f.pb.id);
    f.net.deliver();
    expect(f.fb.peer(f.pa.id).endpoint).toEqual({ host: OUTSIDE, port: A.port });
    again(f);
    expect(f.fb.handshakesSent.at(-1)).toMatchObject({ host: OUTSIDE, port: A.port });
    expect(f.b.stats.endpointRoamsRefused).toBe(0);
    expect(f.fb.counters().endpoint_roam_refused).toBeUndefined();
  });
});
