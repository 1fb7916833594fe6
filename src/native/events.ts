/** The kinds of NativeEvent (binding.ts) the addon reports; a module of its own loads no addon. */
export const EVENT_HANDSHAKE_MESSAGE = 1;
export const EVENT_HANDSHAKE_NEEDED = 2;
export const EVENT_TUN_CLOSED = 3;
export const EVENT_KEYPAIR_CONFIRMED = 4;
