/** The node's WireGuard private key file (cfg.wireguard.privateKeyFile): made once, read back after. */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { HostError } from '../errors.js';
import { generatePrivateKey } from '../wireguard/crypto.js';

/** The node's WireGuard private key (32 bytes) from `file`, or a new one written there (0600, its directory 0700). */
export function loadOrCreateKey(file: string): Buffer {
  if (existsSync(file)) {
    const k = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (k.length !== 32) throw new HostError('WM_KEY_INVALID', `${file}: not a base64 WireGuard private key`);
    return k;
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const k = generatePrivateKey();
  writeFileSync(file, k.toString('base64') + '\n', { mode: 0o600 });
  return k;
}
