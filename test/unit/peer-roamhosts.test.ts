// A peer's roaming set as WireGuardDevice holds it (src/wireguard/peer.ts roamHosts, s40): a set of one address held
// as that address, any other as its array; what it reads back, what the data path is given, and what roamAllowed
// (src/wireguard/roaming.ts) lets a handshake move the endpoint to. Oracle: the set given, canonical and cut to
// ROAM_MAX (roaming.ts), and the roaming rule stated there: no set roams anywhere; with one, only to a source whose
// address is in it (any port), or to where the endpoint is already.
import { describe, expect, it } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { generatePrivateKey } from '../../src/wireguard/crypto.js';
import { roamAllowed } from '../../src/wireguard/roaming.js';

function onePeer() {
  const native = new FakeDevice();
  const dev = new WireGuardDevice({ device: native, tickMs: 0, now: () => 1 });
  const key = generatePrivateKey();
  const peer = dev.addPeer(key, key.toString('base64'));
  dev.setPeerEndpoint(peer, { host: '198.18.0.1', port: 51820 });
  return { native, dev, peer, held: () => (peer as unknown as { roam: unknown }).roam };
}

describe('a peer roaming set', () => {
  it('of one address is held as that address, reads as a new array each time, and passes to the data path as a list', () => {
    const { native, dev, peer, held } = onePeer();
    const hosts = ['198.18.0.1'];
    dev.setPeerRoaming(peer, hosts);
    expect(held()).toBe('198.18.0.1');
    expect(peer.roamHosts).toEqual(hosts);
    expect(peer.roamHosts).not.toBe(peer.roamHosts);
    expect(native.peer(peer.id).roam).toEqual(hosts);
    expect(roamAllowed(peer, { host: '198.18.0.1', port: 4000 })).toBe(true); // its address, another port
    expect(roamAllowed(peer, { host: '198.18.0.2', port: 51820 })).toBe(false);
    dev.close();
  });

  it('of two or more is held as the array given when canonical (shared), else as the canonical copy', () => {
    const { native, dev, peer, held } = onePeer();
    const hosts = ['198.18.0.1', '198.18.0.3'];
    dev.setPeerRoaming(peer, hosts);
    expect(held()).toBe(hosts);
    expect(peer.roamHosts).toBe(hosts);
    expect(native.peer(peer.id).roam).toEqual(hosts);
    expect(roamAllowed(peer, { host: '198.18.0.3', port: 1 })).toBe(true);
    expect(roamAllowed(peer, { host: '198.18.0.2', port: 51820 })).toBe(false);
    // more than ROAM_MAX: the first 4 count, in a copy; one non-canonical spelling: a canonical copy
    dev.setPeerRoaming(peer, ['198.18.0.1', '198.18.0.3', '198.18.0.4', '198.18.0.5', '198.18.0.6']);
    expect(peer.roamHosts).toEqual(['198.18.0.1', '198.18.0.3', '198.18.0.4', '198.18.0.5']);
    expect(roamAllowed(peer, { host: '198.18.0.6', port: 1 })).toBe(false);
    dev.setPeerRoaming(peer, ['::ffff:0:1', '198.18.0.1']);
    expect(native.peer(peer.id).roam).toEqual(peer.roamHosts);
    dev.close();
  });

  it('none roams anywhere; an empty one only where the endpoint is', () => {
    const { native, dev, peer, held } = onePeer();
    dev.setPeerRoaming(peer, null);
    expect(held()).toBeUndefined();
    expect(peer.roamHosts).toBeUndefined();
    expect(native.peer(peer.id).roam).toBeNull();
    expect(roamAllowed(peer, { host: '198.18.0.9', port: 1 })).toBe(true);
    dev.setPeerRoaming(peer, []);
    expect(peer.roamHosts).toEqual([]);
    expect(native.peer(peer.id).roam).toEqual([]);
    expect(roamAllowed(peer, { host: '198.18.0.1', port: 51820 })).toBe(true); // where it is
    expect(roamAllowed(peer, { host: '198.18.0.1', port: 51821 })).toBe(false);
    dev.close();
  });
});
