// Seeded random sequences of peer adds, removals, endpoint changes and allowed-IP sets (overlapping prefixes of
// both families, duplicates in one set) on the real WireGuardDevice (src/wireguard/device.ts), over the shipped
// FakeDevice and over the addon itself (createTun: false: the same cases against the real table, a contract
// test for the fake), against an oracle kept in the test: each peer's list is what it was last given, each
// prefix once where it came first, less the prefixes a later set gave another peer (an address belongs to one
// peer: the WireGuard cryptokey routing table). Checked after every step: the peers by key, each peer's public key
// and allowed IPs as the device reports them (read back from the data path's table since s35), the data path's
// own answer, and the UAPI get's allowed_ip lines.
import { afterEach, describe, expect, it } from 'vitest';
import { formatPrefix, parsePrefix } from '../../src/net/ip.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { readAllowedIPRows } from '../../src/native/rows.js';
import { generatePrivateKey } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { formatGet } from '../../src/wireguard/uapi.js';
import { prng } from '../helpers/prng.js';

const PREFIXES = ['100.64.1.0/24', '100.64.2.0/24', '100.64.0.0/16', '198.18.0.1/32', '198.18.0.2/32', 'fd00:64::/64', 'fd00:64:1::/64', 'fd00::1/128', '0.0.0.0/0'];

/** Devices of the running case: closed after it, passed or failed (the addon's own threads and socket). */
const open: WireGuardDevice[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
});

function run(seed: number, steps: number, real: boolean): void {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const dev: WireGuardDevice = real ? new WireGuardDevice({ createTun: false, tickMs: 0, now: () => 1 }) : new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
  open.push(dev);
  dev.setPrivateKey(generatePrivateKey());
  const keys = Array.from({ length: 6 }, () => generatePrivateKey());
  const model = new Map<string, string[]>(); // key hex -> allowed IPs, in the order set
  for (let step = 0; step < steps; step++) {
    const key = pick(keys);
    const hex = key.toString('hex');
    const x = rnd();
    if (x < 0.15) {
      dev.removePeer(key);
      model.delete(hex);
    } else if (x < 0.3) {
      dev.setPeerEndpoint(dev.addPeer(key), { host: `198.18.1.${step & 255}`, port: 51820 });
      if (!model.has(hex)) model.set(hex, []);
    } else {
      const set = Array.from({ length: Math.floor(rnd() * 4) }, () => pick(PREFIXES));
      dev.setPeerAllowedIPs(dev.addPeer(key), set.map((p) => parsePrefix(p)));
      for (const [other, list] of model) if (other !== hex) model.set(other, list.filter((p) => !set.includes(p)));
      model.set(hex, [...new Set(set)]);
    }
    const ctx = `seed ${seed} step ${step}`;
    expect([...dev.peers.keys()].sort(), ctx).toEqual([...model.keys()].sort());
    const uapiLines: string[] = [];
    for (const [h, list] of model) {
      const peer = dev.getPeer(Buffer.from(h, 'hex'))!;
      expect(peer.publicKey.toString('hex'), ctx).toBe(h);
      expect(peer.publicKeyHex, ctx).toBe(h);
      expect(peer.allowedIPs.map(formatPrefix), ctx).toEqual(list);
      expect(readAllowedIPRows(dev.native.allowedIPs(peer.id)).map(formatPrefix), ctx).toEqual(list);
      uapiLines.push(`public_key=${h}`, ...list.map((p) => `allowed_ip=${p}`));
    }
    const got = formatGet(dev).split('\n').filter((l) => l.startsWith('public_key=') || l.startsWith('allowed_ip='));
    expect(got, ctx).toEqual(uapiLines);
    if (dev.native instanceof FakeDevice) expect(dev.native.peers.size, ctx).toBe(model.size);
    // reading the device's state made no peer's timers (an idle peer holds none)
    expect([...dev.peers.values()].filter((p) => (p as unknown as { timerState?: unknown }).timerState !== undefined), ctx).toEqual([]);
  }
}

describe('WireGuardDevice allowed IPs: seeded sequences against the one-owner-per-prefix oracle', () => {
  for (const seed of [11, 12, 13, 14, 15, 16]) {
    it(`seed ${seed}, FakeDevice`, () => run(seed, 400, false));
    it(`seed ${seed}, the addon`, () => run(seed, 400, true));
  }
});
