// Real native devices over loopback for unit tests of the addon's data path (no TUN), each closed after its test.
import { afterEach } from 'vitest';
import { native, type NativeDevice } from '../../src/native/binding.js';

/** Registers an afterEach that closes them; returns the factory (a started device; its events are dropped). */
export function loopbackDevices(): () => NativeDevice {
  const opened: NativeDevice[] = [];
  afterEach(() => {
    for (const d of opened.splice(0)) d.close();
  });
  return () => {
    const d = new native.Device({ createTun: false, port: 0 });
    d.start(() => undefined); // events (handshake needed) are dropped: the tests play no handshakes
    opened.push(d);
    return d;
  };
}

/** Waits (bounded: 5 s) for cond; the comparison after it names what differs. */
export async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 250 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
}

/**
 * Peer `id` on both devices, each the other's endpoint, with a current keypair between them: d's receiver index
 * `index`, e's `index + 1` (distinct per peer when several share the two devices).
 */
export function keyedPeer(d: NativeDevice, e: NativeDevice, id: number, index: number): void {
  for (const [x, y] of [[d, e], [e, d]] as const) {
    x.upsertPeer(id);
    x.setEndpoint(id, '127.0.0.1', y.port);
  }
  d.installKeypair(id, index, index + 1, Buffer.alloc(32, 7), Buffer.alloc(32, 8), true);
  e.installKeypair(id, index + 1, index, Buffer.alloc(32, 8), Buffer.alloc(32, 7), true);
}

/**
 * A sentinel peer `id` on both devices with a keypair between them; the returned function sends its keepalive and
 * resolves once it is counted: the TX thread has then taken every earlier request to `d` (FIFO).
 */
export function txSentinel(d: NativeDevice, e: NativeDevice, id: number): () => Promise<void> {
  keyedPeer(d, e, id, 1);
  return async () => {
    const before = d.counters().tx_packets!;
    d.sendKeepalive(id);
    await until(() => d.counters().tx_packets! > before);
  };
}
