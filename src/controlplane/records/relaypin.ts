/**
 * The CIDRs a hub may relay to this cluster (`relayCIDRs` of its pin): what this side's operator allowed at
 * `clustermesh connect` (`--a-relay-cidrs`/`--b-relay-cidrs`, or by default the pod CIDRs of the clusters the hub
 * was connected to then). A relayed CIDR becomes a route into the hub's tunnel on every node (agent/peers.ts),
 * so a hub's offer is honoured only inside them (records/trust.ts): it cannot take a public range (8.8.8.0/24) or
 * the node's own metadata service or resolver away from the underlay. A hub pin without the field (pinned before
 * it existed) relays nothing until it is connected again (fail closed, as underlay CIDRs).
 *
 * Bounds: at most MAX_RELAY_PIN ranges; none wider than /8 (IPv4) or /16 (IPv6); none overlapping a range that
 * names no host of its own (net/ip.ts notAHost: loopback, link-local, multicast, cloud platform addresses).
 */
import { z } from 'zod';
import { notAHostIn, parsePrefix } from '../../net/ip.js';
import { cidrWhere } from './underlay.js';

/** A hub relays the pod CIDRs of the clusters behind it (≤ 16 each): room for a few dozen of them. */
export const MAX_RELAY_PIN = 128;

/** Why the CIDR text `c` (parsePrefix takes it) cannot be pinned as relayable, or undefined. */
export function relayCIDRError(c: string): string | undefined {
  const p = parsePrefix(c);
  const min = p.addr.length === 4 ? 8 : 16;
  if (p.cidr < min) return `${c} is wider than /${min}: a hub would relay a share of the Internet`;
  const local = notAHostIn(p);
  return local ? `${c} overlaps ${local}: routed into a hub's tunnel it would take that address off every node` : undefined;
}

export const relayCIDRs = z.array(cidrWhere(relayCIDRError)).max(MAX_RELAY_PIN);
