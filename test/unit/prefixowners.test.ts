// The device's prefix owners and the allowed-IP keys a peer keeps (src/wireguard/prefixowners.ts, s22node): IPv4
// prefixes as numbers in a PairMap, IPv6 ones as text in a Map. Against independent references on seeded random
// sequences: the text keys they replace (net/ip.ts prefixKey/prefixFromKey, which s21 kept) and a plain Map keyed
// by them; plus the edges of the number encoding and of the PairMap's 31-bit values (owners with ids ≥ 2^31).
import { describe, expect, it } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { formatPrefix, parsePrefix, prefixFromKey, prefixKey, type Prefix } from '../../src/net/ip.js';
import { generatePrivateKey } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { allowedKey, prefixOfKey, PrefixOwners } from '../../src/wireguard/prefixowners.js';
import { formatGet } from '../../src/wireguard/uapi.js';
import { prng } from '../helpers/prng.js';

/** A random prefix: IPv4 of any length (2/3 of them, half /32s), else IPv6; address bytes as given (not masked). */
function randomPrefix(rnd: () => number): Prefix {
  const v6 = rnd() < 1 / 3;
  const addr = Buffer.from(Array.from({ length: v6 ? 16 : 4 }, () => Math.floor(rnd() * 256)));
  const max = v6 ? 128 : 32;
  const cidr = rnd() < 0.5 ? max : Math.floor(rnd() * (max + 1));
  return { addr, cidr };
}

const EDGES: Prefix[] = [
  parsePrefix('0.0.0.0/0'),
  parsePrefix('255.255.255.255/32'),
  { addr: Buffer.from([255, 255, 255, 255]), cidr: 0 }, // unmasked: its own key
  parsePrefix('198.18.0.1/32'),
  parsePrefix('198.18.0.0/31'),
  parsePrefix('::/0'),
  parsePrefix('::ffff:198.18.0.1/128'),
  parsePrefix('fd00::1/128'),
  { addr: Buffer.from([198, 18, 0, 1]), cidr: 33 }, // not from parsePrefix: kept as text, as before
  { addr: Buffer.from([198, 18, 0, 1]), cidr: 24 }, // unmasked bytes: their own key, as prefixKey's
];

describe('allowedKey / prefixOfKey against prefixKey / prefixFromKey', () => {
  it('round-trips every prefix and keys two prefixes alike exactly when prefixKey does', () => {
    const rnd = prng(2201);
    const pool = [...EDGES, ...Array.from({ length: 3000 }, () => randomPrefix(rnd))];
    const byText = new Map<string, string | number>();
    const byKey = new Map<string | number, string>();
    for (const p of pool) {
      const k = allowedKey(p);
      const text = prefixKey(p);
      expect(typeof k === 'number', text).toBe(p.addr.length === 4 && p.cidr <= 32);
      if (typeof k === 'number') expect(Number.isSafeInteger(k) && k >= 0 && k < 2 ** 38, text).toBe(true);
      expect(prefixKey(prefixOfKey(k)), text).toBe(prefixKey(prefixFromKey(text)));
      // one key per text and one text per key (injective both ways)
      if (byText.has(text)) expect(byText.get(text), text).toBe(k);
      if (byKey.has(k)) expect(byKey.get(k), text).toBe(text);
      byText.set(text, k);
      byKey.set(k, text);
    }
  });

  it('reads the edges as before', () => {
    expect(allowedKey(parsePrefix('0.0.0.0/0'))).toBe(0);
    expect(allowedKey(parsePrefix('255.255.255.255/32'))).toBe(0xffffffff * 64 + 32);
    expect(formatPrefix(prefixOfKey(0xffffffff * 64 + 32))).toBe('255.255.255.255/32');
    expect(allowedKey({ addr: Buffer.from([198, 18, 0, 1]), cidr: 33 })).toBe('c6120001/33');
    expect(allowedKey(parsePrefix('fd00::1/128'))).toBe(prefixKey(parsePrefix('fd00::1/128')));
  });
});

describe('PrefixOwners against a Map by prefixKey', () => {
  for (const seed of [1, 2, 3, 4]) {
    it(`seed ${seed}: random set/delete over both families, owner ids across 2^31`, () => {
      const rnd = prng(seed);
      const pool = [...EDGES, ...Array.from({ length: 60 }, () => randomPrefix(rnd))];
      const ids = [0, 1, 2, 7, 0x7ffffffe, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
      const owners = new PrefixOwners();
      const ref = new Map<string, number>();
      for (let step = 0; step < 3000; step++) {
        const p = pool[Math.floor(rnd() * pool.length)]!;
        if (rnd() < 0.3) {
          owners.delete(allowedKey(p));
          ref.delete(prefixKey(p));
        } else {
          const id = rnd() < 0.5 ? ids[Math.floor(rnd() * ids.length)]! : Math.floor(rnd() * 2 ** 32);
          owners.set(allowedKey(p), id);
          ref.set(prefixKey(p), id);
        }
        expect(owners.size, `step ${step}`).toBe(ref.size);
        if (step % 50 === 0 || step > 2900) for (const q of pool) expect(owners.get(allowedKey(q)), `step ${step} ${prefixKey(q)}`).toBe(ref.get(prefixKey(q)));
      }
    });
  }
});

describe('WireGuardDevice with peer ids past 2^31 (owners kept beside the PairMap)', () => {
  it('moves prefixes between a low-id and a high-id peer and forgets a removed one', () => {
    const dev = new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
    dev.setPrivateKey(generatePrivateKey());
    const [ka, kb, kc] = [generatePrivateKey(), generatePrivateKey(), generatePrivateKey()];
    const a = dev.addPeer(ka);
    (dev as unknown as { nextPeerId: number }).nextPeerId = 0x7fffffff;
    const b = dev.addPeer(kb);
    const c = dev.addPeer(kc);
    expect([b.id, c.id]).toEqual([0x7fffffff, 0x80000000]);
    const owners = (dev as unknown as { prefixOwner: PrefixOwners }).prefixOwner;
    const P = (...xs: string[]) => xs.map((x) => parsePrefix(x));
    dev.setPeerAllowedIPs(a, P('100.64.1.0/24', '198.18.0.1/32', 'fd00::1/128'));
    dev.setPeerAllowedIPs(c, P('198.18.0.1/32', '100.64.2.0/24'));
    expect(a.allowedIPs.map(formatPrefix)).toEqual(['100.64.1.0/24', 'fd00::1/128']);
    dev.setPeerAllowedIPs(b, P('100.64.2.0/24', 'fd00::1/128'));
    expect(c.allowedIPs.map(formatPrefix)).toEqual(['198.18.0.1/32']);
    expect(a.allowedIPs.map(formatPrefix)).toEqual(['100.64.1.0/24']);
    dev.setPeerAllowedIPs(a, P('198.18.0.1/32'));
    expect(c.allowedIPs.map(formatPrefix)).toEqual([]);
    expect(owners.size).toBe(3);
    dev.removePeer(kb);
    expect(owners.size).toBe(1);
    expect(formatGet(dev).split('\n').filter((l) => l.startsWith('allowed_ip='))).toEqual(['allowed_ip=198.18.0.1/32']);
    dev.close();
  });
});
