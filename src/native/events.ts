/** The kinds of NativeEvent (binding.ts; native/src/wireguard/device.h EventKind); a module of its own loads no addon. */
export enum NativeEventKind {
  /** data: a handshake message from host:port. */
  HandshakeMessage = 1,
  /** peer has packets staged and no keypair. */
  HandshakeNeeded = 2,
  TunClosed = 3,
  /** peer: a responder's next keypair was used by the initiator. */
  KeypairConfirmed = 4,
}
export const EVENT_HANDSHAKE_MESSAGE = NativeEventKind.HandshakeMessage;
export const EVENT_HANDSHAKE_NEEDED = NativeEventKind.HandshakeNeeded;
export const EVENT_TUN_CLOSED = NativeEventKind.TunClosed;
export const EVENT_KEYPAIR_CONFIRMED = NativeEventKind.KeypairConfirmed;
