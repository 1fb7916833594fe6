/**
 * The shapes of FakeDevice (fakedevice.ts): what it keeps per peer, ipcache entry and service, and its options, so a
 * test can read its state by name (the wire FakeNetwork attaches is fakedevice.ts's: it names the device).
 */
import type { NativeDeviceOptions, NativePeerStats } from './binding.js';

export interface FakeKeypair {
  localIndex: number;
  remoteIndex: number;
  sendKey: Buffer;
  recvKey: Buffer;
  initiator: boolean;
}

export interface FakePeer {
  id: number;
  endpoint: { host: string; port: number } | null;
  /** "address/length" (the address masked to it), each once, in the order given. */
  allowedIPs: string[];
  /** Installed since the last clearKeypairs, oldest first. */
  keypairs: FakeKeypair[];
  /** The addon's slots: current sends; next (a responder's) waits for the initiator's first message. */
  current: FakeKeypair | null;
  next: FakeKeypair | null;
  previous: FakeKeypair | null;
  keepalives: number;
  /** flushStaged calls (keepaliveIfEmpty of each). */
  flushes: boolean[];
  /** setRoaming's addresses (null or absent: roams anywhere, as WireGuard; FakeNetwork follows it). */
  roam?: string[] | null;
  /** setPeerIdentity (mesh mode), if called. */
  identity?: { tagged: boolean; defaultIdentity: number; clusters: number[] };
  /** What peerStats reports beyond id, host and port (a test may set any field). */
  stats: Omit<NativePeerStats, 'id' | 'host' | 'port'>;
}

export interface FakeIpcacheEntry {
  identity: number;
  endpoint: number;
}

export interface FakeService {
  m: number;
  /** "address:port/protocol number". */
  frontends: string[];
  backends: Array<{ address: string; port: number; weight: number }>;
}

export interface FakeDeviceOptions extends NativeDeviceOptions {
  gso?: boolean;
  /** The device's monotonic clock in ms (probe answers are stamped with it). */
  now?: () => number;
}

export const zeroStats = (): FakePeer['stats'] => ({
  rxBytes: 0, txBytes: 0, rxPackets: 0, txPackets: 0, lastDataSentMs: 0, lastDataRecvMs: 0, lastAuthSentMs: 0, lastAuthRecvMs: 0,
  sentUnansweredMs: 0, recvUnansweredMs: 0, hasCurrent: false, currentInitiator: false, currentAgeMs: 0, hasNext: false,
  lastProbeReplyMs: 0, probeRttUs: 0, probesSent: 0, probeReplies: 0, probeRepliesQueued: 0, probeRepliesRefused: 0,
});
