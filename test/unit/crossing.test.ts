// Crossed initiations (src/wireguard/crossing.ts) on two WireGuardDevices over linked FakeDevices, one fake
// clock. The oracle is the protocol (whitepaper §5.4, §6.1): one handshake state per peer, a responder's keypair
// usable only after the initiator's first transport message, an initiation's timestamp accepted once. With both
// sides answering each other (wireguard-go, the kernel) crossed initiations leave two responders and no session
// until a retransmission 5 s later; the side with the lower static key keeps its own instead, so the pair has a
// session after one exchange, with the lower key as initiator.
import { afterEach, describe, expect, it } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { linkFakeDevices } from '../../src/native/fakenet.js';
import { generatePrivateKey } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';

const INITIATION = 1;
const RESPONSE = 2;
const TRANSPORT = 4;
const HOSTS = ['198.18.0.1', '198.18.0.2'] as const;
const PORT = 51820;

const open: WireGuardDevice<FakeDevice>[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
});

/** Two devices that know each other's endpoints; `low` and `high` by static public key. */
function crossedPair() {
  const clock = { ms: 5_000_000 };
  const now = () => clock.ms;
  const fakes = [new FakeDevice({ port: PORT, now }), new FakeDevice({ port: PORT, now })] as const;
  const net = linkFakeDevices(fakes[0], fakes[1], HOSTS);
  const devs = fakes.map((device) => new WireGuardDevice({ device, now, tickMs: 0 }));
  open.push(...devs);
  for (const d of devs) d.setPrivateKey(generatePrivateKey());
  const peers = [devs[0]!.addPeer(devs[1]!.identity!.publicKey), devs[1]!.addPeer(devs[0]!.identity!.publicKey)];
  devs[0]!.setPeerEndpoint(peers[0]!, { host: HOSTS[1], port: PORT });
  devs[1]!.setPeerEndpoint(peers[1]!, { host: HOSTS[0], port: PORT });
  const completed = [0, 0];
  devs.forEach((d, i) => d.on('handshake', () => completed[i]!++));
  const lowIs = Buffer.compare(devs[0]!.identity!.publicKey, devs[1]!.identity!.publicKey) < 0 ? 0 : 1;
  const side = (i: number) => ({ dev: devs[i]!, fake: fakes[i]!, peer: peers[i]!, host: HOSTS[i]!, completed: () => completed[i]! });
  return { clock, net, low: side(lowIs), high: side(1 - lowIs) };
}

describe('crossed initiations', () => {
  it('give one session after one exchange: the lower key initiates, the higher key answers it (20 pairs)', () => {
    for (let round = 0; round < 20; round++) {
      const { net, low, high } = crossedPair();
      // both send before either has seen the other's
      low.dev.initiate(low.peer);
      high.dev.initiate(high.peer);
      net.deliver();
      const wire = net.datagrams.map((d) => `${d.type} ${d.from.host}>${d.to.host} ${d.fate}`);
      expect(wire).toEqual([
        `${INITIATION} ${low.host}>${high.host} delivered`,
        `${INITIATION} ${high.host}>${low.host} delivered`, // declined by low: no response to it
        `${RESPONSE} ${high.host}>${low.host} delivered`,
        `${TRANSPORT} ${low.host}>${high.host} delivered`, // low's first transport message confirms high's keypair
      ]);
      expect([low.completed(), high.completed()]).toEqual([1, 1]);
      expect([low.dev.stats.initiationsYielded, high.dev.stats.initiationsYielded]).toEqual([1, 0]);
      expect(low.dev.stats.handshakesRejected + high.dev.stats.handshakesRejected).toBe(0);
      const lk = low.fake.peer(low.peer.id);
      const hk = high.fake.peer(high.peer.id);
      expect(lk.current?.initiator).toBe(true);
      expect(hk.current?.initiator).toBe(false); // confirmed: promoted from next
      expect(hk.next).toBeNull();
      expect(lk.current!.sendKey.equals(hk.current!.recvKey) && hk.current!.sendKey.equals(lk.current!.recvKey)).toBe(true);
    }
  });

  it('a declined initiation cannot be replayed: its timestamp was recorded', () => {
    const { net, low, high } = crossedPair();
    low.dev.initiate(low.peer);
    high.dev.initiate(high.peer);
    net.deliver();
    const declined = net.datagrams.find((d) => d.type === INITIATION && d.from.host === high.host)!.msg;
    const before = low.fake.peer(low.peer.id).current;
    net.handshake(high.fake, low.host, PORT, declined);
    net.deliver();
    expect(low.dev.stats.handshakesRejected).toBe(1);
    expect(net.datagrams.filter((d) => d.type === RESPONSE && d.from.host === low.host)).toEqual([]);
    expect(low.fake.peer(low.peer.id).current).toBe(before);
  });

  it('a peer that moved is answered: its initiation comes from elsewhere than where ours went', () => {
    const { net, low, high } = crossedPair();
    low.dev.setPeerEndpoint(low.peer, { host: '198.18.0.99', port: PORT }); // its old address: nothing there
    low.dev.initiate(low.peer);
    high.dev.initiate(high.peer);
    net.deliver();
    expect(low.dev.stats.initiationsYielded).toBe(0);
    expect([low.completed(), high.completed()]).toEqual([1, 1]);
    expect(low.peer.endpoint).toEqual({ host: high.host, port: PORT }); // roamed to where the initiation came from
  });

  it('our initiation older than REKEY_TIMEOUT (5 s) no longer holds: the peer is answered', () => {
    const { clock, net, low, high } = crossedPair();
    net.lose = (d) => d.type === INITIATION && d.from.host === low.host;
    low.dev.initiate(low.peer);
    net.deliver();
    net.lose = undefined;
    clock.ms += 5_000;
    high.dev.initiate(high.peer);
    net.deliver();
    expect(low.dev.stats.initiationsYielded).toBe(0);
    expect([low.completed(), high.completed()]).toEqual([1, 1]);
    expect(high.fake.peer(high.peer.id).current?.initiator).toBe(true);
  });

  it('without a crossing nothing changes: the lower key answers an initiation when it has none outstanding', () => {
    const { net, low, high } = crossedPair();
    high.dev.initiate(high.peer);
    net.deliver();
    expect(net.datagrams.map((d) => d.type)).toEqual([INITIATION, RESPONSE, TRANSPORT]);
    expect([low.completed(), high.completed(), low.dev.stats.initiationsYielded]).toEqual([1, 1, 0]);
  });
});
