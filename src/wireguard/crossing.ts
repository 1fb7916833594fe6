/**
 * Crossed initiations: both sides of a peer pair send an initiation before either has seen the other's (two
 * pods on two nodes opening connections to each other at once; more likely here than over the kernel's
 * WireGuard since our handshake messages wait for the JavaScript thread). The handshake state is one per peer
 * (whitepaper §5.4): answering the peer's initiation overwrites the state our own waits in, so each side becomes
 * the responder of the other's, the responses that then arrive match nothing, and neither side may send on a
 * responder's keypair before the initiator's first transport message (§5.4.4, §6.1). Both wait for a
 * retransmission REKEY_TIMEOUT later (5 s + jitter): what wireguard-go and the kernel do.
 *
 * Here one side yields: while our own initiation is outstanding (state initiation-created, sent less than
 * REKEY_TIMEOUT ago, to the address the peer's initiation comes from), the side whose static public key sorts
 * lower keeps its initiation and declines the peer's; the other side answers ours, as every implementation
 * does, and its own initiation is forgotten when our first transport message confirms the session. Messages are
 * unchanged, so this interoperates: against a stock peer the worst case is the 5 s stall above. The address
 * condition keeps a peer that moved (its initiations from elsewhere than where ours go) from being declined
 * while ours go to its old address. Only an initiation that passed every check (decrypted, newer timestamp,
 * flood guard) is declined, and its timestamp is recorded: a declined initiation cannot be replayed later.
 */
import type { Handshake } from './noise.js';
import type { Endpoint } from './peer.js';
import { REKEY_TIMEOUT_MS } from './timers.js';

/** What the decision reads of a peer (a `Peer` has all of it). */
export interface CrossingPeer {
  readonly publicKey: Buffer;
  readonly endpoint: Endpoint | undefined;
  /** Monotonic ms of the last handshake message we sent it. */
  readonly lastSentHandshakeMs: number;
}

/**
 * True when the initiation `hs` was just checked for (from `peer`, arrived from `from`, at monotonic `nowMs`)
 * crossed our own outstanding one and we, the lower static key `localKey`, keep ours.
 */
export function yieldsCrossedInitiation(localKey: Buffer, peer: CrossingPeer, hs: Handshake, from: Endpoint, nowMs: number): boolean {
  return (
    hs.state === 'initiation-created' &&
    nowMs - peer.lastSentHandshakeMs < REKEY_TIMEOUT_MS &&
    peer.endpoint?.host === from.host &&
    peer.endpoint.port === from.port &&
    Buffer.compare(localKey, peer.publicKey) < 0
  );
}
