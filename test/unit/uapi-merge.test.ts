// UAPI set requests that add to peers' allowed IPs (no replace_allowed_ips), many blocks per request, on the real
// addon and on the FakeDevice. Oracle, kept here from the cross-platform UAPI and wireguard-go (each allowed_ip line
// inserts its prefix for the block's peer; an address belongs to one peer, so the peer that held it loses it;
// replace_allowed_ips=true first empties the peer's list), with one rule of ours: a prefix the peer already holds
// stays where it is in its list (wireguard-go moves it last; the UAPI merge has kept it in place since s15).
// Regression (s35 attacker review): each merging block read the peer's whole list back and set it again, so a
// request of n one-line blocks for one peer cost O(n²): 4,000 took ~12 s, with every peer's handshakes waiting.
import { afterEach, describe, expect, it } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { formatGet, handleRequest } from '../../src/wireguard/uapi.js';
import { prng } from '../helpers/prng.js';

const open: WireGuardDevice[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
});

const POOL = ['100.64.1.0/24', '100.64.2.0/24', '100.64.0.0/16', '198.18.0.1/32', '198.18.0.2/32', 'fd00:64::/64', 'fd00::1/128', '0.0.0.0/0', '::/0'];

function device(real: boolean): WireGuardDevice {
  const d = real ? new WireGuardDevice({ createTun: false, tickMs: 0 }) : new WireGuardDevice({ device: new FakeDevice(), tickMs: 0 });
  open.push(d);
  return d;
}

/** The allowed_ip lines of a get, by peer (hex key), in order. */
function listed(d: WireGuardDevice): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let cur: string[] = [];
  for (const l of formatGet(d).split('\n')) {
    if (l.startsWith('public_key=')) out.set(l.slice(11), (cur = []));
    else if (l.startsWith('allowed_ip=')) cur.push(l.slice(11));
  }
  return out;
}

describe('UAPI set: allowed IPs added block by block', () => {
  for (const real of [false, true]) {
    for (const seed of [31, 32, 33, 34]) {
      it(`seeded requests agree with the line-by-line model (seed ${seed}, ${real ? 'the addon' : 'FakeDevice'})`, () => {
        const rnd = prng(seed);
        const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
        const d = device(real);
        expect(handleRequest(d, ['set=1', `private_key=${generatePrivateKey().toString('hex')}`])).toBe('errno=0\n\n');
        const keys = Array.from({ length: 3 }, () => publicFromPrivate(generatePrivateKey()).toString('hex'));
        const model = new Map<string, string[]>(); // the peers a block named, as the device adds them
        const give = (peer: string, p: string) => {
          if (model.get(peer)!.includes(p)) return;
          for (const [k, l] of model) if (k !== peer) model.set(k, l.filter((x) => x !== p));
          model.get(peer)!.push(p);
        };
        for (let req = 0; req < 40; req++) {
          const lines = ['set=1'];
          for (let b = 0, blocks = 1 + Math.floor(rnd() * 4); b < blocks; b++) {
            const peer = pick(keys);
            const replace = rnd() < 0.2;
            const given = Array.from({ length: Math.floor(rnd() * 4) }, () => pick(POOL));
            lines.push(`public_key=${peer}`, ...(replace ? ['replace_allowed_ips=true'] : []), ...given.map((p) => `allowed_ip=${p}`));
            if (replace || !model.has(peer)) model.set(peer, []);
            for (const p of given) give(peer, p);
          }
          expect(handleRequest(d, lines), `seed ${seed} request ${req}`).toBe('errno=0\n\n');
          expect(listed(d), `seed ${seed} request ${req}`).toEqual(model);
        }
      });
    }
  }

  it('n one-line blocks for one peer hand the data path n prefixes in all, and never read its list back', () => {
    const native = new FakeDevice();
    const d = new WireGuardDevice({ device: native, tickMs: 0 });
    open.push(d);
    const peer = publicFromPrivate(generatePrivateKey()).toString('hex');
    const calls = { given: 0, reads: 0 };
    const add = native.addAllowedIPs.bind(native);
    const set = native.setAllowedIPs.bind(native);
    native.addAllowedIPs = (id, ps) => ((calls.given += ps.length), add(id, ps));
    native.setAllowedIPs = (id, ps) => ((calls.given += ps.length), set(id, ps));
    native.allowedIPs = () => (calls.reads++, Buffer.alloc(0));
    const n = 2_000;
    const lines = ['set=1'];
    for (let i = 0; i < n; i++) lines.push(`public_key=${peer}`, `allowed_ip=100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`);
    expect(handleRequest(d, lines)).toBe('errno=0\n\n');
    expect(calls).toEqual({ given: n, reads: 0 });
    expect(native.peer(d.getPeer(Buffer.from(peer, 'hex'))!.id).allowedIPs.length).toBe(n);
  });
});
