// Native devices without a TUN for unit tests of the addon, each closed after its test.
import { afterEach } from 'vitest';
import type { NativeDevice } from '../../src/native/binding.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';

/** Registers an afterEach that closes them; returns the factory (a new device's native handle). */
export function nativeDevices(): () => NativeDevice {
  const devs: WireGuardDevice[] = [];
  afterEach(() => {
    for (const d of devs.splice(0)) d.close();
  });
  return () => {
    const d = new WireGuardDevice({ createTun: false });
    devs.push(d);
    return d.native;
  };
}
