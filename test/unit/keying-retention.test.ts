// Regression (review of s39): sharedKeying cached a peer's keying per clock function, and since s39 the keying holds
// the device's allowed-IPs reader, so a clock given to several devices (or Date.now) kept the last closed device alive
// with its peers and native handle. The cache is now per reader (one per device): a closed device is collected
// whatever clock it was given, and peers of two devices on one clock (and one private key) each read their own
// device's allowed IPs.
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { expect, it } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';
import { formatPrefix, parsePrefix } from '../../src/net/ip.js';

const sharedClock = (): number => 1_000;

function closedDevice(clock: () => number): WeakRef<object> {
  const dev = new WireGuardDevice({ device: new FakeDevice({ now: clock }), now: clock, tickMs: 0 });
  dev.setPrivateKey(generatePrivateKey());
  dev.addPeer(publicFromPrivate(generatePrivateKey()));
  dev.close();
  return new WeakRef(dev);
}

it('a closed device is collected when its clock function lives on (one clock for several devices)', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const own = closedDevice(() => 1_000);
  const shared = closedDevice(sharedClock);
  const later = closedDevice(sharedClock);
  // (no deref in the loop: a WeakRef's target read in a job stays alive until the job ends)
  for (let i = 0; i < 6; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  expect({ own: own.deref() === undefined, shared: shared.deref() === undefined, later: later.deref() === undefined }).toEqual({ own: true, shared: true, later: true });
});

it('peers of two devices on one clock and one private key each read their own device\'s allowed IPs', () => {
  const key = generatePrivateKey();
  const [a, b] = [0, 1].map(() => {
    const dev = new WireGuardDevice({ device: new FakeDevice({ now: sharedClock }), now: sharedClock, tickMs: 0 });
    dev.setPrivateKey(key);
    return dev;
  });
  // made in turn, their ids colliding (each device also has an identity object of its own, which alone keeps their
  // keyings apart today: this checks the read end to end, whatever the cache is keyed by)
  const pa = a!.addPeer(publicFromPrivate(generatePrivateKey()));
  const pb = b!.addPeer(publicFromPrivate(generatePrivateKey()));
  const pa2 = a!.addPeer(publicFromPrivate(generatePrivateKey()));
  a!.setPeerAllowedIPs(pa, [parsePrefix('100.64.1.0/24')]);
  b!.setPeerAllowedIPs(pb, [parsePrefix('100.64.2.0/24')]);
  a!.setPeerAllowedIPs(pa2, [parsePrefix('100.64.3.0/24')]);
  expect([pa, pb, pa2].map((p) => p.allowedIPs.map(formatPrefix))).toEqual([['100.64.1.0/24'], ['100.64.2.0/24'], ['100.64.3.0/24']]);
  a!.close();
  b!.close();
});
