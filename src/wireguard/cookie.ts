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

export class CookieGenerator {
  private readonly mac1Key: Buffer;
  private readonly cookieKey: Buffer;
  private cookie: Buffer | null = null;
  private cookieSetMs = 0;
  private lastMac1: Buffer | null = null;

  constructor(peerPublicKey: Buffer, private readonly now: () => number) {
    this.mac1Key = mac1Key(peerPublicKey);
    this.cookieKey = cookieKey(peerPublicKey);
  }

  /** Fills mac1 and mac2 (the last 32 bytes) of a handshake message in place. */
  addMacs(msg: Buffer): Buffer {
    const n = msg.length;
    const m1 = mac(this.mac1Key, msg.subarray(0, n - 32));
    m1.copy(msg, n - 32);
    this.lastMac1 = m1;
    if (this.cookie && this.now() - this.cookieSetMs < COOKIE_REFRESH_MS) {
      mac(this.cookie, msg.subarray(0, n - 16)).copy(msg, n - 16);
    } else {
      msg.fill(0, n - 16);
    }
    return msg;
  }

  /** Takes a cookie reply answering our last message; false if it does not decrypt. */
  consumeReply(reply: Buffer): boolean {
    if (reply.length !== 64 || !this.lastMac1) return false;
    const nonce = reply.subarray(8, 32);
    const cookie = xaeadOpen(this.cookieKey, nonce, reply.subarray(32, 64), this.lastMac1);
    if (!cookie) return false;
    this.cookie = cookie;
    this.cookieSetMs = this.now();
    this.lastMac1 = null;
    return true;
  }

  get hasCookie(): boolean {
    return this.cookie !== null && this.now() - this.cookieSetMs < COOKIE_REFRESH_MS;
  }
}
