// Review of s23node's shared peer keying (src/wireguard/keying.ts): real handshakes on linked FakeDevices, a hub and
// four spokes on one network and ONE clock function (written when sharedKeying cached per clock, so one cache served five
// identities; since s39 it caches per device, by its reader, and that sharing no longer happens: the protocol checks stand),
// configured through UAPI (`wg set`) as an operator would: a preshared key set on one of the hub's peers and then
// cleared with the all-zero key, the hub's private key rotated (also to none and back), peers added between. The
// reference is the protocol: a handshake completes exactly when both sides hold the same preshared key and each
// side's peer key is the other's current public key; `wg show` lists a non-zero preshared key only where one was set.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { FakeNetwork } from '../../src/native/fakenet.js';
import { dh, generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { handleRequest } from '../../src/wireguard/uapi.js';

const PORT = 51820;
const hex = (b: Buffer): string => b.toString('hex');
const devices: WireGuardDevice<FakeDevice>[] = [];
// initiations carry a wall-clock TAI64N timestamp (replay guard, 16.8 ms grain): the wall clock moves with the fake one
beforeEach(() => void vi.useFakeTimers({ toFake: ['Date'] }));
afterEach(() => {
  for (const d of devices.splice(0)) d.close();
  vi.useRealTimers();
});

function mesh(spokes: number) {
  const clock = { ms: 1_000_000 };
  const now = () => clock.ms; // one clock function for every device
  const net = new FakeNetwork();
  const mk = (host: string) => {
    const fd = new FakeDevice({ port: PORT, now });
    net.attach(fd, host);
    const dev = new WireGuardDevice({ device: fd, now, tickMs: 0 });
    devices.push(dev);
    const keys = generatePrivateKey();
    expect(set(dev, [`private_key=${hex(keys)}`])).toBe('errno=0\n\n');
    return { dev, host, done: 0 };
  };
  const hub = mk('198.18.0.1');
  const sp = Array.from({ length: spokes }, (_, i) => mk(`198.18.0.${i + 2}`));
  for (const n of [hub, ...sp]) n.dev.on('handshake', () => n.done++);
  for (const s of sp) {
    set(hub.dev, [`public_key=${hex(s.dev.identity!.publicKey)}`, `endpoint=${s.host}:${PORT}`]);
    set(s.dev, [`public_key=${hex(hub.dev.identity!.publicKey)}`, `endpoint=${hub.host}:${PORT}`]);
  }
  /** Initiates from `from` to its peer for `to`, lets everything arrive; true when both sides completed. */
  const shake = (from: (typeof sp)[number], to: (typeof sp)[number]): boolean => {
    clock.ms += 10_000; // past REKEY_TIMEOUT: a new initiation is sent
    vi.setSystemTime(Date.now() + 10_000);
    const [a, b] = [from.done, to.done];
    const peer = from.dev.getPeer(to.dev.identity!.publicKey);
    if (!peer) return false;
    from.dev.initiate(peer);
    net.deliver();
    return from.done > a && to.done > b;
  };
  return { hub, sp, shake, clock };
}

function set(dev: WireGuardDevice<FakeDevice>, lines: string[]): string {
  return handleRequest(dev, ['set=1', ...lines]);
}

/** `wg show` preshared keys by peer public key (hex). */
function pskLines(dev: WireGuardDevice<FakeDevice>): Map<string, string> {
  const out = new Map<string, string>();
  let key = '';
  for (const l of handleRequest(dev, ['get=1']).split('\n')) {
    if (l.startsWith('public_key=')) key = l.slice(11);
    if (l.startsWith('preshared_key=')) out.set(key, l.slice(14));
  }
  return out;
}

describe('s23node review: shared keying under UAPI preshared keys and private key rotation', () => {
  it('a preshared key set then cleared (all zero) on one of many peers: only that peer changes, handshakes follow', () => {
    const { hub, sp, shake } = mesh(4);
    for (const s of sp) expect(shake(hub, s)).toBe(true);
    const psk = hex(Buffer.alloc(32, 0x5a));
    const target = sp[1]!;
    expect(set(hub.dev, [`public_key=${hex(target.dev.identity!.publicKey)}`, `preshared_key=${psk}`])).toBe('errno=0\n\n');
    // only one side has it: that pair fails, every other pair still completes (no leak to the shared keying)
    expect(shake(hub, target)).toBe(false);
    for (const s of sp) if (s !== target) expect(shake(hub, s)).toBe(true);
    expect([...pskLines(hub.dev).values()].filter((v) => v !== '0'.repeat(64))).toEqual([psk]);
    set(target.dev, [`public_key=${hex(hub.dev.identity!.publicKey)}`, `preshared_key=${psk}`]);
    expect(shake(hub, target)).toBe(true);
    expect(shake(target, hub)).toBe(true);
    // a peer added now shares no preshared key
    const late = generatePrivateKey();
    set(hub.dev, [`public_key=${hex(publicFromPrivate(late))}`]);
    expect(pskLines(hub.dev).get(hex(publicFromPrivate(late)))).toBe('0'.repeat(64));
    // cleared with the all-zero key on both sides (wg set ... preshared-key /dev/null sends zeros)
    set(hub.dev, [`public_key=${hex(target.dev.identity!.publicKey)}`, `preshared_key=${'0'.repeat(64)}`]);
    expect(shake(hub, target)).toBe(false);
    set(target.dev, [`public_key=${hex(hub.dev.identity!.publicKey)}`, `preshared_key=${'0'.repeat(64)}`]);
    expect(shake(hub, target)).toBe(true);
    expect([...pskLines(hub.dev).values()].every((v) => v === '0'.repeat(64))).toBe(true);
    for (const s of sp) expect(shake(s, hub)).toBe(true);
  });

  it('the hub private key rotated (to none and back, and anew) reaches every peer, the one with a preshared key too', () => {
    const { hub, sp, shake } = mesh(4);
    const psk = hex(Buffer.alloc(32, 3));
    set(hub.dev, [`public_key=${hex(sp[2]!.dev.identity!.publicKey)}`, `preshared_key=${psk}`]);
    set(sp[2]!.dev, [`public_key=${hex(hub.dev.identity!.publicKey)}`, `preshared_key=${psk}`]);
    for (const s of sp) expect(shake(hub, s)).toBe(true); // every handshake state built with the first key
    const oldPub = hub.dev.identity!.publicKey;
    set(hub.dev, [`private_key=${'0'.repeat(64)}`]); // no key: nothing can run
    expect(hub.dev.identity).toBeNull();
    for (const s of sp) expect(shake(hub, s)).toBe(false);
    const second = generatePrivateKey();
    set(hub.dev, [`private_key=${hex(second)}`]);
    const newPub = hub.dev.identity!.publicKey;
    for (const p of hub.dev.peers.values()) expect(p.handshake.precomputedStaticStatic).toEqual(dh(second, p.publicKey));
    // spokes still know the old key: their initiations fail (MAC1 for the old key), ours are answered by nobody
    for (const s of sp) expect(shake(s, hub)).toBe(false);
    for (const s of sp) {
      set(s.dev, [`public_key=${hex(oldPub)}`, 'remove=true']);
      set(s.dev, [`public_key=${hex(newPub)}`, `endpoint=${hub.host}:${PORT}`, ...(s === sp[2] ? [`preshared_key=${psk}`] : [])]);
    }
    for (const s of sp) expect(shake(hub, s)).toBe(true);
    for (const s of sp) expect(shake(s, hub)).toBe(true);
    expect([...pskLines(hub.dev).values()].filter((v) => v !== '0'.repeat(64))).toEqual([psk]);
  });

  it('two devices on one clock rotating keys in turn: each peer handshakes with its own device identity', () => {
    const { hub, sp, shake } = mesh(2);
    const [a, b] = sp as [(typeof sp)[number], (typeof sp)[number]];
    // a and b peer with each other too; rotate a, then b, then a again, each followed by peers added on the other
    set(a.dev, [`public_key=${hex(b.dev.identity!.publicKey)}`, `endpoint=${b.host}:${PORT}`]);
    set(b.dev, [`public_key=${hex(a.dev.identity!.publicKey)}`, `endpoint=${a.host}:${PORT}`]);
    expect(shake(a, b)).toBe(true);
    for (const who of [a, b, a]) {
      const other = who === a ? b : a;
      const oldPub = who.dev.identity!.publicKey;
      set(who.dev, [`private_key=${hex(generatePrivateKey())}`]);
      for (const x of [hub, other]) {
        set(x.dev, [`public_key=${hex(oldPub)}`, 'remove=true']);
        set(x.dev, [`public_key=${hex(who.dev.identity!.publicKey)}`, `endpoint=${who.host}:${PORT}`]);
      }
      set(other.dev, [`public_key=${hex(publicFromPrivate(generatePrivateKey()))}`]); // another peer on the other device
      expect(shake(who, other)).toBe(true);
      expect(shake(other, who)).toBe(true);
      expect(shake(hub, who)).toBe(true);
      expect(shake(who, hub)).toBe(true);
    }
  });
});
