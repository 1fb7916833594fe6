/**
 * The shapes around WireGuardDevice (device.ts): what it needs of the data path, its options and statistics.
 */
import type { Logger } from '../log.js';
import type { NativeDevice } from '../native/binding.js';

/** What this class uses of the data path (declared here, so that a fake can stand in). */
export type WireGuardNative = Pick<
  NativeDevice,
  | 'tunName'
  | 'port'
  | 'start'
  | 'close'
  | 'rebind'
  | 'setFwmark'
  | 'setPublicKey'
  | 'upsertPeer'
  | 'removePeer'
  | 'setEndpoint'
  | 'setRoaming'
  | 'setAllowedIPs'
  | 'allowedIPs'
  | 'addAllowedIPs'
  | 'installKeypair'
  | 'clearKeypairs'
  | 'sendKeepalive'
  | 'flushStaged'
  | 'refreshMtu'
  | 'sendHandshake'
  | 'peerStats'
>;

export interface DeviceOptions<D extends WireGuardNative = NativeDevice> {
  /** TUN name to create; omit with createTun=false for a UDP-only device. */
  tunName?: string;
  createTun?: boolean;
  mtu?: number;
  listenPort?: number;
  logger?: Logger;
  /** Timer tick period; tests may shorten it, or pass 0 to call tick() themselves. */
  tickMs?: number;
  /**
   * The data path, already built (tunName, createTun, mtu and listenPort are then its own business).
   * Default: the addon's Device, built from the options above.
   */
  device?: D;
  /** The monotonic clock in ms the timers run on; default the addon's (the data path's timestamps use it). */
  now?: () => number;
}

export interface DeviceStats {
  handshakesInitiated: number;
  handshakesCompleted: number;
  handshakesRejected: number;
  cookieRepliesConsumed: number;
  /** Peers' initiations that crossed ours: answered from a scratch state, ours kept (noise.ts consumeInitiation). */
  initiationsCrossed: number;
  /** Handshakes from a source outside a mesh peer's roaming set (roaming.ts): answered, the endpoint kept. */
  endpointRoamsRefused: number;
}
