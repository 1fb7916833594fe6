/**
 * The CIDRs a hub may relay to this cluster (`relayCIDRs` of its pin): what this side's operator allowed at
 * `clustermesh connect` (`--a-relay-cidrs`/`--b-relay-cidrs`, or by default the pod CIDRs of the clusters the hub
 * was connected to then). A relayed CIDR becomes a route into the hub's tunnel on every node (agent/peers.ts),
 * so a hub's offer is honoured only inside them (records/trust.ts): it cannot take a public range (8.8.8.0/24) or
 * the node's own metadata service or resolver away from the underlay. A hub pin without the field (pinned before
 * it existed) relays nothing until it is connected again (fail closed, as underlay CIDRs).
 *
 * Bounds: at most MAX_RELAY_PIN ranges; none wider than /8 (IPv4) or /16 (IPv6); none overlapping a range that
 * names no host of its own (net/ip.ts notAHost: loopback, link-local, multicast, cloud platform addresses), nor
 * an IPv6 translation prefix (records/underlay.ts: NAT64, 6to4, Teredo embed the whole IPv4 Internet).
 */
import { z } from 'zod';
import { notAHostIn, parsePrefix, prefixCovers } from '../../net/ip.js';
import { cidrWhere, translationIn } from './underlay.js';

/** A hub relays the pod CIDRs of the clusters behind it (≤ 16 each): room for a few dozen of them. */
export const MAX_RELAY_PIN = 128;

/** Why the CIDR text `c` (parsePrefix takes it) cannot be pinned as relayable, or undefined. */
export function relayCIDRError(c: string): string | undefined {
  const p = parsePrefix(c);
  const min = p.addr.length === 4 ? 8 : 16;
  if (p.cidr < min) return `${c} is wider than /${min}: a hub would relay a share of the Internet`;
  const local = notAHostIn(p);
  if (local) return `${c} overlaps ${local}: routed into a hub's tunnel it would take that address off every node`;
  const t = translationIn(p);
  return t ? `${c} ${t}: a hub would relay a share of the IPv4 Internet` : undefined;
}

/** Shared and private address space (RFC 6598, RFC 1918, RFC 4193): where connect's default takes pod CIDRs from. */
const PRIVATE_SPACE = ['100.64.0.0/10', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7'].map((c) => parsePrefix(c));

/**
 * Why connect's default (a hub's pinned pod CIDRs, read from the hub's own etcd) may not take the CIDR text `c`:
 * relayCIDRError's reasons, or outside shared/private space (a hub's etcd could name a public range as a pin's
 * pod CIDR); undefined when it may. An operator names anything else explicitly (--a-relay-cidrs/--b-relay-cidrs).
 */
export function defaultRelayCIDRError(c: string): string | undefined {
  const p = parsePrefix(c);
  if (!PRIVATE_SPACE.some((r) => prefixCovers(r, p))) return `${c} is outside shared/private address space (100.64.0.0/10, RFC 1918, fc00::/7)`;
  return relayCIDRError(c);
}

export const relayCIDRs = z.array(cidrWhere(relayCIDRError)).max(MAX_RELAY_PIN);
