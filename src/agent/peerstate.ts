/**
 * The reconciler's state per peer (peers.ts): one per node of every connected cluster (16,000 at 16 × 1000).
 *
 * Shape: PeerState (the interface status.ts and tests read) and PeerEntry, the object the reconciler holds: five
 * fields (64 B, 64-bit V8 without pointer compression, as Node ships it; 72 B as the six-field literal before
 * s23node). What it shares rather than holds: `routes` is not kept but read as the record's pod CIDRs when
 * nothing is relayed (nearly every peer; a new array for a node's one CIDR, which the record holds as its text:
 * records/node.ts HeldNode) and as a new array of those and the relayed CIDRs otherwise (a hub: read on its
 * changes only); `relayed` is the one empty array when empty; a lone claim (nearly every peer's: one node
 * address) is its key, not a one-element array (s21peer: ~60 B per peer). No array held is written in place:
 * each change sets a new one.
 */
import type { NodeRecord } from '../controlplane/records/index.js';
import type { LoneList } from '../lonelist.js';

/** The part of a WireGuard peer the reconciler and status read (wireguard/peer.ts Peer). */
export interface PeerHandle {
  readonly id: number;
  readonly publicKey: Buffer;
  /** 0 before the first handshake. */
  lastHandshakeEpochMs: number;
  /** Monotonic ms since we started initiating without an answer; 0 when not initiating. */
  initiatingSinceMs: number;
  /** Where handshakes go (the configured endpoint, or where the last handshake came from). */
  readonly endpoint?: { host: string; port: number } | undefined;
}

export interface PeerState {
  readonly record: NodeRecord;
  readonly peer: PeerHandle;
  /** Pod CIDRs of the node, then those relayed (RouteClaims claims them by content, not by array). */
  readonly routes: readonly string[];
  /** Pod CIDRs of other clusters reached through this (hub) node. */
  readonly relayed: readonly string[];
  /**
   * Node addresses this peer claims, whether or not it holds them (addressClaims), as claim keys (peers.ts claimKey):
   * one key as itself, none as the shared empty array, two or more as an array (lonelist.ts).
   */
  readonly claims: LoneList;
  /** The address its endpoint was set to (one of the record's): slot 0 of its roaming set. */
  readonly endpointHost: string;
}

export const NONE: readonly string[] = Object.freeze([]);

export class PeerEntry implements PeerState {
  claims: LoneList = NONE;

  constructor(
    /** Replaced by a same-content record (a relist's copy), so the old one is not kept alive. */
    public record: NodeRecord,
    readonly peer: PeerHandle,
    readonly relayed: readonly string[],
    public endpointHost: string,
  ) {}

  get routes(): readonly string[] {
    const pod = this.record.podCIDRs;
    return this.relayed.length ? [...pod, ...this.relayed] : pod;
  }
}
