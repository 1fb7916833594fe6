/**
 * Kernel names built from user names in the testbed: interface names are at
 * most 15 bytes (IFNAMSIZ 16 with the NUL), UNIX socket paths at most 107
 * (sun_path 108). A name that does not fit is shortened as boundedName does
 * (its start, "_", 8 hex digits of its SHA-256); everything else (records,
 * labels, CLI output) keeps the user's names. A clash of the digest among
 * one node's pods would fail loudly: `ip link add` refuses a name that exists.
 */
import { boundedName } from '../boundedname.js';

export const IFNAME_MAX = 15;
export const SOCKET_PATH_MAX = 107;

/** An interface name: prefix + name when it fits in 15 bytes, else shortened (e.g. vpfron_1a2b3c4d). */
export const ifName = (prefix: string, name: string): string => boundedName(prefix, name, IFNAME_MAX);

/** A socket file dir/base.sock within 107 bytes (names are ASCII: characters are bytes). */
export function socketPath(dir: string, base: string): string {
  return `${dir}/${boundedName('', base, SOCKET_PATH_MAX - dir.length - 1 - '.sock'.length)}.sock`;
}
