// Crossed initiations (noise.ts consumeInitiation) on two WireGuardDevices over linked FakeDevices, one fake clock.
// The oracle is the protocol (whitepaper §5.4, §6.1): an initiation's timestamp accepted once, a responder's
// keypair usable for sending only after the initiator's first transport message, a session usable when a transport
// message sealed with it opens at the other side. With one handshake state per peer (wireguard-go, the kernel)
// crossed initiations leave two responders and no session until a retransmission 5 s later; here each side keeps
// its own initiation while it answers the peer's, so both complete in one exchange. Every valid initiation is still
// answered, so the cases where only one side's initiation can succeed complete as without the change.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { linkFakeDevices } from '../../src/native/fakenet.js';
import { generatePrivateKey } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { consumeInitiation, createInitiation, Handshake, StaticIdentity } from '../../src/wireguard/noise.js';
import type { Peer } from '../../src/wireguard/peer.js';

const INITIATION = 1;
const RESPONSE = 2;
const TRANSPORT = 4;
const HOSTS = ['198.18.0.1', '198.18.0.2'] as const;
const PORT = 51820;

const open: WireGuardDevice<FakeDevice>[] = [];
afterEach(() => {
  vi.restoreAllMocks();
  for (const d of open.splice(0)) d.close();
});

/** Two devices, a and b; b learns a only when `bKnowsA` (else call learn()). */
function pair(bKnowsA = true) {
  const clock = { ms: 5_000_000 };
  const now = () => clock.ms;
  const fakes = [new FakeDevice({ port: PORT, now }), new FakeDevice({ port: PORT, now })] as const;
  const net = linkFakeDevices(fakes[0], fakes[1], HOSTS);
  const [a, b] = fakes.map((device) => new WireGuardDevice({ device, now, tickMs: 0 })) as [WireGuardDevice<FakeDevice>, WireGuardDevice<FakeDevice>];
  open.push(a, b);
  a.setPrivateKey(generatePrivateKey());
  b.setPrivateKey(generatePrivateKey());
  const completed = { a: 0, b: 0 };
  a.on('handshake', () => completed.a++);
  b.on('handshake', () => completed.b++);
  const pb = a.addPeer(b.identity!.publicKey);
  a.setPeerEndpoint(pb, { host: HOSTS[1], port: PORT });
  const s = { pa: undefined as Peer | undefined };
  const learn = () => {
    s.pa = b.addPeer(a.identity!.publicKey);
    b.setPeerEndpoint(s.pa, { host: HOSTS[0], port: PORT });
  };
  if (bKnowsA) learn();
  /** Moves the clock, runs both devices' timers, delivers what they send. */
  const step = (ms: number) => {
    clock.ms += ms;
    a.tick();
    b.tick();
    net.deliver();
  };
  /** ms until both sides completed a handshake, stepping 250 ms (as the device's timer does), at most 30 s. */
  const untilBoth = () => {
    let t = 0;
    for (; (completed.a === 0 || completed.b === 0) && t < 30_000; t += 250) step(250);
    return t;
  };
  return { clock, net, fa: fakes[0], fb: fakes[1], a, b, pb, s, learn, completed, step, untilBoth };
}

/** a initiates and its initiation is lost on the way (b never sees it). */
function loseOurInitiation(p: ReturnType<typeof pair>): void {
  p.net.lose = (d) => d.type === INITIATION && d.from.host === HOSTS[0];
  p.a.initiate(p.pb);
  p.net.deliver();
  p.net.lose = undefined;
}

/** True when a keepalive `from` sends to its peer now opens at the other side (its session works that way). */
function carries(p: ReturnType<typeof pair>, from: 'a' | 'b'): boolean {
  const before = p.net.datagrams.length;
  if (from === 'a') p.fa.sendKeepalive(p.pb.id);
  else p.fb.sendKeepalive(p.s.pa!.id);
  p.net.deliver();
  const sent = p.net.datagrams.slice(before);
  return sent.length === 1 && sent[0]!.type === TRANSPORT && sent[0]!.fate === 'delivered';
}

describe('crossed initiations', () => {
  it('give a session each way after one exchange: both answered, both kept, data passes both ways (20 pairs)', () => {
    for (let round = 0; round < 20; round++) {
      const p = pair();
      // both send before either has seen the other's
      p.a.initiate(p.pb);
      p.b.initiate(p.s.pa!);
      p.net.deliver();
      expect(p.net.datagrams.map((d) => `${d.type} ${d.from.host}>${d.to.host} ${d.fate}`)).toEqual([
        `${INITIATION} ${HOSTS[0]}>${HOSTS[1]} delivered`,
        `${INITIATION} ${HOSTS[1]}>${HOSTS[0]} delivered`,
        `${RESPONSE} ${HOSTS[1]}>${HOSTS[0]} delivered`,
        `${RESPONSE} ${HOSTS[0]}>${HOSTS[1]} delivered`,
        // each initiator's first transport message (its keepalive), opened by the other side
        `${TRANSPORT} ${HOSTS[0]}>${HOSTS[1]} delivered`,
        `${TRANSPORT} ${HOSTS[1]}>${HOSTS[0]} delivered`,
      ]);
      expect(p.completed).toEqual({ a: 1, b: 1 });
      expect([p.a.stats.initiationsCrossed, p.b.stats.initiationsCrossed, p.a.stats.handshakesRejected + p.b.stats.handshakesRejected]).toEqual([1, 1, 0]);
      // each side sends on the session it initiated; the other holds the same keys as the one it answered
      const ka = p.fa.peer(p.pb.id);
      const kb = p.fb.peer(p.s.pa!.id);
      expect([ka.current?.initiator, kb.current?.initiator]).toEqual([true, true]);
      expect(ka.current!.sendKey.equals(kb.previous!.recvKey) && kb.current!.sendKey.equals(ka.previous!.recvKey)).toBe(true);
      expect([carries(p, 'a'), carries(p, 'b'), carries(p, 'a')]).toEqual([true, true, true]);
    }
  });

  it('a crossed initiation cannot be replayed: its timestamp is the peer guard, not the scratch state', () => {
    const p = pair();
    p.a.initiate(p.pb);
    p.b.initiate(p.s.pa!);
    p.net.deliver();
    const crossed = p.net.datagrams.find((d) => d.type === INITIATION && d.from.host === HOSTS[1])!.msg;
    const responses = () => p.net.datagrams.filter((d) => d.type === RESPONSE && d.from.host === HOSTS[0]).length;
    const before = responses();
    p.clock.ms += 1_000; // past the flood guard: only the timestamp can refuse it
    p.net.handshake(p.fb, HOSTS[0], PORT, crossed);
    p.net.deliver();
    expect(p.a.stats.handshakesRejected).toBe(1);
    expect(responses()).toBe(before);
  });

  it('without a crossing the peer state answers: no scratch state, one session', () => {
    const p = pair();
    p.b.initiate(p.s.pa!);
    p.net.deliver();
    expect(p.net.datagrams.map((d) => d.type)).toEqual([INITIATION, RESPONSE, TRANSPORT]);
    expect([p.completed.a, p.completed.b, p.a.stats.initiationsCrossed]).toEqual([1, 1, 0]);
  });

  // Where one side's initiation cannot complete, the other's is answered at once (main's behaviour: the oracle).
  it('our initiation lost, then the peer initiates: answered at once', () => {
    const p = pair();
    loseOurInitiation(p);
    p.step(300);
    p.b.initiate(p.s.pa!);
    p.net.deliver();
    expect(p.untilBoth()).toBe(0);
  });

  it('the peer learnt us late (it refused our initiation), then initiates: answered at once', () => {
    const p = pair(false);
    p.a.initiate(p.pb);
    p.net.deliver(); // b: an initiation from an unknown peer, refused
    p.step(1_000);
    p.learn();
    p.b.initiate(p.s.pa!);
    p.net.deliver();
    expect(p.untilBoth()).toBe(0);
  });

  it('ours older than REKEY_TIMEOUT (5 s) is given up: the peer state answers, nothing counted as crossed', () => {
    const p = pair();
    loseOurInitiation(p);
    p.clock.ms += 5_000; // no tick: its retransmission not sent yet
    p.b.initiate(p.s.pa!);
    p.net.deliver();
    expect([p.completed.a, p.completed.b, p.a.stats.initiationsCrossed]).toEqual([1, 1, 0]);
    expect(p.pb.handshake.state).toBe('zeroed'); // answered from it, session derived, wiped
  });

  it('a session the peer confirmed drops our pending initiation: its response, held back and let go later, is refused', () => {
    const p = pair();
    p.net.lose = (d) => d.type === RESPONSE && d.from.host === HOSTS[1]; // an on-path attacker holds b's answer to ours
    p.a.initiate(p.pb);
    p.b.initiate(p.s.pa!);
    p.net.deliver();
    p.net.lose = undefined;
    const held = p.net.datagrams.find((d) => d.type === RESPONSE && d.from.host === HOSTS[1])!.msg;
    expect(p.completed).toEqual({ a: 1, b: 1 }); // a answered b's (scratch), b's keepalive confirmed it
    expect(p.pb.handshake.state).toBe('zeroed'); // ours dropped, its ephemeral wiped
    const current = p.fa.peer(p.pb.id).current;
    p.step(60_000);
    p.net.handshake(p.fb, HOSTS[0], PORT, held);
    p.net.deliver();
    expect(p.a.stats.handshakesRejected).toBe(1);
    expect(p.fa.peer(p.pb.id).current).toBe(current);
    expect(carries(p, 'a')).toBe(true);
  });

  it('the peer refuses every initiation of ours (our clock stepped back behind what it recorded): its own complete', () => {
    const p = pair();
    const ts = Buffer.alloc(12);
    ts.writeBigUInt64BE(0x4000000000000000n + BigInt(Math.floor(Date.now() / 1000) + 3600)); // TAI64N, an hour ahead
    p.s.pa!.handshake.lastTimestamp = ts;
    p.a.initiate(p.pb);
    p.net.deliver();
    expect(p.b.stats.handshakesRejected).toBe(1);
    p.step(700);
    p.b.initiate(p.s.pa!);
    p.net.deliver();
    expect(p.untilBoth()).toBe(0);
    expect(carries(p, 'a')).toBe(true);
  });
});

describe('the scratch state a crossed initiation is answered from (noise.ts)', () => {
  it("leaves ours pending and keeps the peer's flood guard: another initiation within 20 ms is refused", () => {
    const a = new StaticIdentity(generatePrivateKey());
    const b = new StaticIdentity(generatePrivateKey());
    const aSeesB = new Handshake(a, b.publicKey);
    const bSeesA = new Handshake(b, a.publicKey);
    createInitiation(a, aSeesB, 1); // ours, waiting
    aSeesB.initiatedAtMs = 990; // sent 10 ms before the peer's arrives (the device sets it)
    const find = (k: Buffer) => (k.equals(b.publicKey) ? aSeesB : undefined);
    const scratch = consumeInitiation(a, createInitiation(b, bSeesA, 2, Date.now()), find, 1_000);
    expect(scratch).not.toBe(aSeesB);
    expect([aSeesB.state, aSeesB.localIndex, scratch.state]).toEqual(['initiation-created', 1, 'initiation-consumed']);
    expect(() => consumeInitiation(a, createInitiation(b, bSeesA, 3, Date.now() + 1_000), find, 1_010)).toThrow(/flood/);
  });
});
