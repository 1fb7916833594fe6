/**
 * Source validation per pod: a packet arriving from a pod's veth must carry
 * that pod's address. One nftables table in the node's namespace, `netdev
 * wiremesh_pods`, holds per pod a chain on the ingress hook of the node-side
 * veth (the earliest point, before routing: a spoofed packet never reaches the
 * TUN, where the data path could no longer tell which interface it came from)
 * and a named counter `spoofed_<veth>` of what it dropped. Each drop also
 * adds (veth . source . destination . protocol) to the table's dynamic set
 * spoofed4 / spoofed6 (bounded, elements time out), which the agent turns
 * into flow records (DROPPED, source-spoofed). The add is its own rule, before
 * the drop: a full set fails the add, and the drop still happens.
 *
 * Why not rp_filter: strict reverse-path filtering would do for IPv4 (routes
 * are per pod /32) but has no IPv6 counterpart and its drops are one global
 * counter without the interface. See docs/architecture.md.
 */
import { execFileSync } from 'node:child_process';
import { z } from 'zod';
import { HostError } from '../errors.js';
import { ifName } from './ifname.js';

export const POD_GUARD_TABLE = 'wiremesh_pods';
/** Elements per family the sets of spoofed tuples hold (nft `size`): more tuples are still dropped and counted, not recorded. */
export const SPOOF_SET_SIZE = 4096;
/** Seconds a tuple stays in its set: the agent's SpoofWatch (src/agent/spoofwatch.ts) makes one flow record per tuple per this long. */
export const SPOOF_SET_TIMEOUT_S = 60;

/** The node-side veth of a pod (its name is the interface the guard and its flow records name). */
export function podVeth(name: string): string {
  return ifName('vp', name);
}

/**
 * nft names of a veth's chain and counter: its bytes in hex, one to one. (A
 * mapping of "-" to "_" made `vpfron-c3ebb11e` and the shortened
 * `vpfron_c3ebb11e` share one chain: each pod was dropped by the other's rule,
 * and deleting either left the other unguarded.)
 */
export function podGuardIdent(veth: string): string {
  return `v${Buffer.from(veth).toString('hex')}`;
}
const ident = podGuardIdent;

function nft(script: string, netns?: string): string {
  const [cmd, ...args] = netns ? ['ip', 'netns', 'exec', netns, 'nft', '-f', '-'] : ['nft', '-f', '-'];
  return execFileSync(cmd!, args, { input: script, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** The rules for one pod: IPv4 only from its address; IPv6 only from its address, link-local (NDP) or :: (DAD). */
export function podGuardScript(veth: string, ip: string, ip6?: string): string {
  const c = ident(veth);
  const v6 = ['::', 'fe80::/10', ...(ip6 ? [ip6] : [])].join(', ');
  const set = (name: string, addr: string) =>
    `add set netdev ${POD_GUARD_TABLE} ${name} { type ifname . ${addr} . ${addr} . inet_proto; size ${SPOOF_SET_SIZE}; flags dynamic,timeout; timeout ${SPOOF_SET_TIMEOUT_S}s; }`;
  const rule = (r: string) => `add rule netdev ${POD_GUARD_TABLE} ${c} ${r}`;
  return [
    `table netdev ${POD_GUARD_TABLE} {}`,
    set('spoofed4', 'ipv4_addr'),
    set('spoofed6', 'ipv6_addr'),
    `add counter netdev ${POD_GUARD_TABLE} spoofed_${c}`,
    `add chain netdev ${POD_GUARD_TABLE} ${c} { type filter hook ingress device "${veth}" priority -500; policy accept; }`,
    rule(`meta protocol ip ip saddr != ${ip} add @spoofed4 { meta iifname . ip saddr . ip daddr . meta l4proto }`),
    rule(`meta protocol ip ip saddr != ${ip} counter name spoofed_${c} drop`),
    rule(`meta protocol ip6 ip6 saddr != { ${v6} } add @spoofed6 { meta iifname . ip6 saddr . ip6 daddr . meta l4proto }`),
    rule(`meta protocol ip6 ip6 saddr != { ${v6} } counter name spoofed_${c} drop`),
    '',
  ].join('\n');
}

export function installPodGuard(veth: string, ip: string, ip6: string | undefined, netns?: string): void {
  nft(podGuardScript(veth, ip, ip6), netns);
}

/** Removes the pod's chain and counter (the kernel keeps a netdev chain whose device went away). */
export function removePodGuard(veth: string, netns?: string): void {
  const c = ident(veth);
  try {
    nft(`delete chain netdev ${POD_GUARD_TABLE} ${c}\ndelete counter netdev ${POD_GUARD_TABLE} spoofed_${c}\n`, netns);
  } catch {
    // already gone (a node namespace deleted first, or a pod wired before the guard existed)
  }
}

/** The part of `nft -j list counter` read here (libnftables' JSON output). */
const nftCounters = z.object({ nftables: z.array(z.object({ counter: z.object({ packets: z.number() }).optional() })) });

/** Packets dropped as spoofed from this pod's veth. */
export function spoofedPackets(veth: string, netns?: string): number {
  const nftArgs = ['-j', 'list', 'counter', 'netdev', POD_GUARD_TABLE, `spoofed_${ident(veth)}`];
  const [cmd, ...args] = netns ? ['ip', 'netns', 'exec', netns, 'nft', ...nftArgs] : ['nft', ...nftArgs];
  const out = execFileSync(cmd!, args, { encoding: 'utf8' });
  const listed = nftCounters.safeParse(JSON.parse(out));
  if (!listed.success) throw new HostError('WM_NFT_ANSWER', `nft -j list counter: unexpected answer (${listed.error.issues[0]?.message ?? 'invalid'})`);
  return listed.data.nftables.find((o) => o.counter)?.counter?.packets ?? 0;
}
