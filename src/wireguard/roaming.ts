/**
 * A mesh peer's roaming policy on the control side (native/src/wireguard/roam.h is the data path's half).
 *
 * WireGuard moves a peer's endpoint to the source of every authenticated message (whitepaper §2.1), handshakes
 * included. A mesh peer is a node whose record names its underlay addresses: a compromised node that spoofs its
 * source must not point our traffic for it (handshake responses, keepalives, its pods' answers) at a third party.
 * With a roaming set its endpoint moves only to a source whose address is in the set (any port); a handshake from
 * elsewhere is still answered, at the current endpoint. Peers without one (plain WireGuard) roam anywhere.
 */
import { formatIP, parseIP } from '../net/ip.js';
import type { Endpoint } from './peer.js';

/** Addresses of a roaming set that count (roam.h RoamSet::kMax): a node record names up to 16, nearly always 1–2. */
export const ROAM_MAX = 4;

/**
 * The roaming set for `hosts`: their canonical texts, the first ROAM_MAX; `hosts` itself when it is that already (a
 * node record's addresses are canonical: an agent holds a peer per node, issue 16; a set of one the peer then
 * holds as its address: peer.ts roamHosts). Throws TypeError on a non-address.
 */
export function roamHosts(hosts: readonly string[]): readonly string[] {
  const set = hosts.slice(0, ROAM_MAX).map((h) => {
    const addr = parseIP(h);
    if (!addr) throw new TypeError(`roaming set: ${JSON.stringify(h)} is not an IP address`);
    return formatIP(addr);
  });
  return sharedIfEqual(set, hosts);
}

/** `have` when it holds the same elements as `want` in order (kept, not a copy per peer: issue 16), else `want`. */
export function sharedIfEqual<T>(want: readonly T[], have: readonly T[]): readonly T[] {
  return want.length === have.length && want.every((x, i) => x === have[i]) ? have : want;
}

/**
 * Whether an authenticated handshake from `from` may move the peer's endpoint there: it is there already, the peer
 * has no roaming set (WireGuard), or `from`'s address is in the set.
 */
export function roamAllowed(peer: { endpoint: Endpoint | undefined; roamHosts: readonly string[] | undefined }, from: Endpoint): boolean {
  if (!peer.roamHosts || (peer.endpoint?.host === from.host && peer.endpoint.port === from.port)) return true;
  const addr = parseIP(from.host);
  return addr !== null && peer.roamHosts.includes(formatIP(addr));
}

/**
 * A device's counters (native `counters()`) with `endpoint_roam_refused` summed over both halves of the policy:
 * transport messages (native, roam.h) and handshakes (`handshakes`: DeviceStats.endpointRoamsRefused). What the agent
 * status's `counters` and `wiremesh_endpoint_roam_refused_total` report.
 */
export function withRoamRefusals(native: Record<string, number>, handshakes: number): Record<string, number> {
  return { ...native, endpoint_roam_refused: (native.endpoint_roam_refused ?? 0) + handshakes };
}
