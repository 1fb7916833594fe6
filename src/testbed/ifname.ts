/**
 * Kernel names built from user names (pods, underlay hosts, agent sockets),
 * where the kernel sets a limit: interface names are at most 15 bytes
 * (IFNAMSIZ 16 with the NUL), UNIX socket paths at most 107 (sun_path 108).
 * Names are Cilium's and Kubernetes' (clusters up to 32 characters, pods and
 * nodes DNS labels up to 63), so a name that does not fit is shortened to a
 * stable, collision-free form: its first characters, "_" and 8 hex digits of
 * SHA-256 of the whole name. "_" never occurs in a DNS label, so a shortened
 * name never equals one that fitted as it was; the digest keeps two long names
 * with a common prefix apart (a clash of 32 bits among one node's pods would
 * fail loudly: `ip link add` refuses a name that exists). Everything else
 * (records, labels, CLI output) keeps the user's names.
 */
import { createHash } from 'node:crypto';

export const IFNAME_MAX = 15;
export const SOCKET_PATH_MAX = 107;

const digest = (s: string) => createHash('sha256').update(s).digest('hex').slice(0, 8);

/** An interface name: prefix + name when it fits in 15 bytes, else prefix + the name's start + "_" + 8 hex digits. */
export function ifName(prefix: string, name: string): string {
  const whole = `${prefix}${name}`;
  if (whole.length <= IFNAME_MAX) return whole;
  const keep = IFNAME_MAX - prefix.length - 9;
  if (keep < 0) throw new Error(`interface prefix ${JSON.stringify(prefix)} is too long`);
  return `${prefix}${name.slice(0, keep)}_${digest(name)}`;
}

/** A socket file dir/base.sock; when the path would pass 107 bytes, base is shortened as ifName shortens names. */
export function socketPath(dir: string, base: string): string {
  const whole = `${dir}/${base}.sock`;
  if (Buffer.byteLength(whole) <= SOCKET_PATH_MAX) return whole;
  const keep = SOCKET_PATH_MAX - Buffer.byteLength(dir) - 1 - 9 - 5;
  if (keep < 0) throw new Error(`socket directory ${dir} is too long for a UNIX socket path`);
  return `${dir}/${base.slice(0, keep)}_${digest(base)}.sock`;
}
