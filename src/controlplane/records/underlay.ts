/**
 * A cluster's underlay CIDRs: where its nodes' own addresses (node records' `addresses`, the WireGuard
 * endpoints and, in mesh mode, allowed IPs of their peers) live. Recorded by `clustermesh enable
 * --underlay-cidrs` in the cluster-config and pinned for the other side at `clustermesh connect`; every node
 * address any cluster names must lie inside its cluster's pinned ranges (records/trust.ts), so a node cannot
 * name a DNS resolver or another cluster's node as its own (docs/security.md).
 *
 * Bounds: at most MAX_CIDRS ranges; none wider than /8 (IPv4) or /16 (IPv6): a pin of 0.0.0.0/0 would let a
 * cluster's nodes name any address again; none overlapping an IPv6 prefix that embeds IPv4 addresses of the
 * whole Internet (NAT64, 6to4, Teredo): an address there names some other host through a translator.
 */
import { z } from 'zod';
import { formatPrefix, parsePrefix, prefixCovers, type Prefix } from '../../net/ip.js';
import { cidr, isCidr, MAX_CIDRS } from './fields.js';

/** Translation prefixes that embed IPv4 addresses (RFC 6052 and 8215 NAT64, RFC 3056 6to4, RFC 4380 Teredo). */
export const TRANSLATION_PREFIXES: readonly Prefix[] = ['64:ff9b::/96', '64:ff9b:1::/48', '2002::/16', '2001::/32'].map((c) => parsePrefix(c));

/** Why the CIDR text `c` (parsePrefix takes it) cannot be an underlay range, or undefined. */
export function underlayCIDRError(c: string): string | undefined {
  const p = parsePrefix(c);
  const min = p.addr.length === 4 ? 8 : 16;
  if (p.cidr < min) return `${c} is wider than /${min}: an underlay range names the cluster's own network`;
  const t = translationIn(p);
  return t ? `${c} ${t}` : undefined;
}

/** "overlaps the translation prefix 64:ff9b::/96 (…)" when `p` overlaps one of TRANSLATION_PREFIXES, or undefined. */
export function translationIn(p: Prefix): string | undefined {
  // (parsed prefixes are masked: two overlap when one holds the other)
  const t = TRANSLATION_PREFIXES.find((x) => prefixCovers(x, p) || prefixCovers(p, x));
  return t ? `overlaps the translation prefix ${formatPrefix(t)} (its addresses embed other hosts' IPv4 ones)` : undefined;
}

/** A CIDR field refused where `error` says why (underlay and relay pins). */
export function cidrWhere(error: (c: string) => string | undefined) {
  return cidr.superRefine((c, ctx) => {
    // zod runs this refinement after a failed `cidr` one too: that text is refused there, not parsed here
    const why = isCidr(c) ? error(c) : undefined;
    if (why) ctx.addIssue({ code: 'custom', message: why });
  });
}

export const underlayCIDRs = z.array(cidrWhere(underlayCIDRError)).min(1).max(MAX_CIDRS);
