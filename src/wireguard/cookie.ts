/**
 * The sending side of WireGuard's cookie mechanism (whitepaper §5.4.7): mac1 on
 * every handshake message we send, mac2 while we hold a fresh cookie from the
 * peer, and consumption of the peer's cookie replies. One generator per peer,
 * keyed by that peer's public key. The receiving side (checking mac1/mac2,
 * answering with cookie replies) runs natively: native/src/wireguard/cookie.cc.
 */
import { hash, mac, xaeadOpen } from './crypto.js';

export const COOKIE_REFRESH_MS = 120_000;
const LABEL_MAC1 = Buffer.from('mac1----');
const LABEL_COOKIE = Buffer.from('cookie--');

export function mac1Key(publicKey: Buffer): Buffer {
  return hash(LABEL_MAC1, publicKey);
}

export function cookieKey(publicKey: Buffer): Buffer {
  return hash(LABEL_COOKIE, publicKey);
}

/**
 * The macs of the handshake messages we send to one peer. The handshake's native create steps write
 * mac1/mac2 from `mac1Key` and `freshCookie()` (noise.ts); `addMacs` is the same in TypeScript.
 */
export class CookieGenerator {
  /** HASH(LABEL_MAC1 || the peer's public key), 32 bytes: derived once per peer. */
  readonly mac1Key: Buffer;
  private readonly cookieKey: Buffer;
  private cookie: Buffer | null = null;
  private cookieSetMs = 0;
  /** mac1 of the last message sent (16 bytes; valid while hasLastMac1): a cookie reply's AEAD data. */
  private readonly lastMac1 = Buffer.alloc(16);
  private hasLastMac1 = false;

  constructor(peerPublicKey: Buffer, private readonly now: () => number) {
    this.mac1Key = mac1Key(peerPublicKey);
    this.cookieKey = cookieKey(peerPublicKey);
  }

  /** The peer's cookie (16 bytes) while it is fresh (younger than 120 s), else null: mac2 is then zero. */
  freshCookie(): Buffer | null {
    return this.cookie && this.now() - this.cookieSetMs < COOKIE_REFRESH_MS ? this.cookie : null;
  }

  /** Records the mac1 of a whole message just built with our macs (a cookie reply to it is bound to it). */
  sent(msg: Buffer): void {
    msg.copy(this.lastMac1, 0, msg.length - 32, msg.length - 16);
    this.hasLastMac1 = true;
  }

  /** Fills mac1 and mac2 (the last 32 bytes) of a handshake message in place. */
  addMacs(msg: Buffer): Buffer {
    const n = msg.length;
    mac(this.mac1Key, msg.subarray(0, n - 32)).copy(msg, n - 32);
    this.sent(msg);
    const cookie = this.freshCookie();
    if (cookie) {
      mac(cookie, msg.subarray(0, n - 16)).copy(msg, n - 16);
    } else {
      msg.fill(0, n - 16);
    }
    return msg;
  }

  /** Takes a cookie reply answering our last message; false if it does not decrypt. */
  consumeReply(reply: Buffer): boolean {
    if (reply.length !== 64 || !this.hasLastMac1) return false;
    const nonce = reply.subarray(8, 32);
    const cookie = xaeadOpen(this.cookieKey, nonce, reply.subarray(32, 64), this.lastMac1);
    if (!cookie) return false;
    this.cookie = cookie;
    this.cookieSetMs = this.now();
    this.hasLastMac1 = false;
    return true;
  }

  get hasCookie(): boolean {
    return this.freshCookie() !== null;
  }
}
