/** Key encodings: wg(8) uses base64, UAPI lowercase hex. */
import { ConfigError } from '../errors.js';

export function keyFromBase64(text: string, field = 'key'): Buffer {
  const t = text.trim();
  const b = Buffer.from(t, 'base64');
  if (b.length !== 32 || b.toString('base64') !== t) throw new ConfigError(field, 'not a base64 32-byte key');
  return b;
}

export function keyFromHex(text: string, field = 'key'): Buffer {
  if (!/^[0-9a-f]{64}$/.test(text)) throw new ConfigError(field, 'not a 64-character lowercase hex key');
  return Buffer.from(text, 'hex');
}

export const toHex = (k: Buffer): string => k.toString('hex');
export const toBase64 = (k: Buffer): string => k.toString('base64');
