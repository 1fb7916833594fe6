// Regression (review of s39): sharedKeying cached a peer's keying per clock function, and since s39 the keying holds
// the device's allowed-IPs reader, so a clock given to several devices (or Date.now) kept the last closed device alive
// with its peers and native handle. The cache is now per reader (one per device): a closed device is collected
// whatever clock it was given, and peers of two devices on one clock each read their own device's allowed IPs.
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { expect, it } from 'vitest';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';

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
