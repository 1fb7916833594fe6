/**
 * The host's side of the agent's data path: the policy routing that sends
 * every packet of a pod through the TUN (HairpinRouting) and the router
 * address (the routes of peers' CIDRs into the TUN: routetable.ts). Everything
 * here runs `ip` / `sysctl` in the agent's network namespace, once at start
 * and stop (blocking: nothing here runs per reconcile pass).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import type { Logger } from '../log.js';
import { formatIP, parseIP, parsePrefix } from '../net/ip.js';
import { ConfigError } from '../errors.js';

/** The part of `ip -j addr show` read here (iproute2's JSON), decoded rather than cast. */
const ipAddrAnswer = z.array(z.object({ ifname: z.string(), addr_info: z.array(z.object({ local: z.string().optional() }).passthrough()).optional() }).passthrough());

/** `ip <args>`, its output; '' when it fails. */
export function ipOut(args: string[]): string {
  try {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

/** `ip <args>`; a failure is logged, not thrown. */
export function ip(args: string[], log: Logger): void {
  try {
    execFileSync('ip', args, { stdio: 'ignore' });
  } catch (err) {
    log.warn({ args: args.join(' '), err: (err as Error).message }, 'ip command failed');
  }
}

/** What HairpinRouting needs of node.yaml. */
export interface HairpinConfig {
  node: { addresses: string[]; podCIDRs: string[] };
  services: { dns: { enabled: boolean; address: string } };
}

/**
 * Every packet of a pod crosses the TUN, so the data path is the one place
 * policy is enforced (docs/architecture.md, "One enforcement point"). IPv4:
 *
 *   pref 9     to <pods' gateway, DNS address>     lookup local   ARP for the gateway is answered only if local
 *   pref 10    iif <TUN>                           lookup local   what the data path writes back: ours to deliver,
 *   pref 11    iif <TUN>                           lookup main    or routed normally (never into rule 13 again)
 *   pref 12    iif lo                              lookup local   the host's own packets: as before
 *   pref 13    from <our pod CIDR>                 lookup 2004    everything our pods send, to this node's own
 *                                                                 addresses too (egress policy, identity host)
 *   pref 100   lookup local                                       the kernel's pref 0 rule, moved behind ours
 *   pref 2002  iif <underlay> to <our pod CIDR>    lookup 2004    the world reaching our pods (ingress policy)
 *   table 2004: <our pod CIDR> dev <TUN>, default dev <TUN>
 *
 * IPv6 keeps the local rule at pref 0 (link-local gateways, neighbour
 * discovery): pref 2003 iif <TUN> lookup main, pref 2004 from <pod CIDR>
 * lookup 2004, and pref 2002 as above, so a pod's IPv6 packets to this node's
 * own addresses are delivered without a check.
 */
export class HairpinRouting {
  /** Pods' IPv4 packets to this node's own addresses cross the TUN (rules 9-13, local rule at 100). */
  private ownNodeV4 = false;
  /** ip_early_demux before we turned it off (restored at stop). */
  private earlyDemuxWas: string | undefined;
  /** Interfaces the world reaches our pods through (rule 2002). */
  private underlay: string[] = [];

  constructor(
    private readonly cfg: HairpinConfig,
    private readonly tun: string,
    private readonly log: Logger,
  ) {}

  install(): void {
    const underlay = this.underlayDevices();
    this.underlay = underlay;
    this.ownNodeV4 = this.cfg.node.podCIDRs.some((c) => !c.includes(':')) && this.disableEarlyDemux();
    const ops = [...this.removeOps(), ...this.installOps()];
    for (const op of ops) {
      try {
        execFileSync('ip', op.split(' '), { stdio: ['ignore', 'ignore', 'pipe'] });
      } catch (err) {
        if (!op.includes(' del ')) this.log.warn({ op, err: String((err as { stderr?: Buffer }).stderr ?? err).trim() }, 'hairpin routing step failed');
      }
    }
    if (underlay.length === 0) this.log.warn({ addresses: this.cfg.node.addresses }, 'no interface holds the node addresses: traffic from outside the mesh to pods will not meet ingress policy');
    try {
      execFileSync('sysctl', ['-qw', `net.ipv4.conf.${this.tun}.rp_filter=0`]);
    } catch {
      /* no IPv4 on this node */
    }
  }

  remove(): void {
    for (const op of this.removeOps())
      try {
        execFileSync('ip', op.split(' '), { stdio: 'ignore' });
      } catch {
        /* already gone */
      }
    if (this.earlyDemuxWas !== undefined) {
      try {
        execFileSync('sysctl', ['-qw', `net.ipv4.ip_early_demux=${this.earlyDemuxWas}`]);
      } catch {
        /* as it is */
      }
    }
  }

  private installOps(): string[] {
    const tun = this.tun;
    const v4 = this.cfg.node.podCIDRs.filter((c) => !c.includes(':'));
    const v6 = this.cfg.node.podCIDRs.filter((c) => c.includes(':'));
    const ops: string[] = [];
    if (v4.length && !this.ownNodeV4) {
      // as IPv6 (below): the pod's packets to this node's own addresses are delivered unchecked
      ops.push(`-4 rule add pref 2003 iif ${tun} lookup main`);
      for (const c of v4) ops.push(`-4 rule add pref 2004 from ${c} lookup 2004`);
    } else if (v4.length) {
      for (const g of this.podGateways()) ops.push(`-4 rule add pref 9 to ${g} lookup local`);
      ops.push(`-4 rule add pref 10 iif ${tun} lookup local`, `-4 rule add pref 11 iif ${tun} lookup main`, '-4 rule add pref 12 iif lo lookup local');
      for (const c of v4) ops.push(`-4 rule add pref 13 from ${c} lookup 2004`);
      // the kernel's local rule moves behind ours: added at 100 first, so there is always one
      ops.push('-4 rule add pref 100 lookup local', '-4 rule del pref 0 lookup local');
    }
    if (v6.length) {
      ops.push(`-6 rule add pref 2003 iif ${tun} lookup main`);
      for (const c of v6) ops.push(`-6 rule add pref 2004 from ${c} lookup 2004`);
    }
    for (const c of [...v4, ...v6]) {
      const fam = c.includes(':') ? '-6' : '-4';
      for (const dev of this.underlay) ops.push(`${fam} rule add pref 2002 iif ${dev} to ${c} lookup 2004`);
      ops.push(`${fam} route replace ${c} dev ${tun} table 2004`, `${fam} route replace ${c.includes(':') ? '::/0' : '0.0.0.0/0'} dev ${tun} table 2004`);
    }
    return ops;
  }

  /** Undoes installOps (also what a crashed run left): the local rule back at pref 0 first. */
  private removeOps(): string[] {
    const tun = this.tun;
    const v4 = this.cfg.node.podCIDRs.filter((c) => !c.includes(':'));
    const v6 = this.cfg.node.podCIDRs.filter((c) => c.includes(':'));
    const ops: string[] = [];
    if (v4.length) {
      // (`ip rule add` makes duplicates: the local rule goes back at pref 0 only where it is missing)
      if (!ipOut(['-4', 'rule', 'list', 'pref', '0']).includes('lookup local')) ops.push('-4 rule add pref 0 lookup local');
      ops.push('-4 rule del pref 100 lookup local');
      for (const g of this.podGateways()) ops.push(`-4 rule del pref 9 to ${g} lookup local`);
      ops.push(`-4 rule del pref 10 iif ${tun} lookup local`, `-4 rule del pref 11 iif ${tun} lookup main`, '-4 rule del pref 12 iif lo lookup local');
      for (const c of v4) ops.push(`-4 rule del pref 13 from ${c} lookup 2004`, `-4 rule del pref 2004 from ${c} lookup 2004`);
      ops.push(`-4 rule del pref 2003 iif ${tun} lookup main`); // (earlier versions)
    }
    if (v6.length) {
      ops.push(`-6 rule del pref 2003 iif ${tun} lookup main`);
      for (const c of v6) ops.push(`-6 rule del pref 2004 from ${c} lookup 2004`);
    }
    for (const c of [...v4, ...v6]) for (const dev of this.underlay) ops.push(`${c.includes(':') ? '-6' : '-4'} rule del pref 2002 iif ${dev} to ${c} lookup 2004`);
    return ops;
  }

  /**
   * The pods' gateway (169.254.1.1 on every pod veth, src/testbed/pod.ts) and
   * the service DNS address: delivered locally before rule 13, because the
   * kernel answers a pod's ARP for its gateway only if a route lookup (with the
   * pod's source) says local. So a pod's packets to them (DNS) are not checked.
   */
  private podGateways(): string[] {
    const dns = this.cfg.services.dns;
    return [...new Set(['169.254.1.1', ...(dns.enabled && !dns.address.includes(':') ? [dns.address] : [])])];
  }

  /** Interfaces holding the node's (underlay) addresses: where traffic from outside the mesh arrives. */
  private underlayDevices(): string[] {
    try {
      const links = ipAddrAnswer.parse(JSON.parse(execFileSync('ip', ['-j', 'addr', 'show'], { encoding: 'utf8' })));
      const mine = new Set(this.cfg.node.addresses.map((a) => formatIP(parseIP(a)!)));
      return [...new Set(links.filter((l) => l.ifname !== this.tun && l.ifname !== 'lo' && (l.addr_info ?? []).some((a) => a.local && parseIP(a.local) && mine.has(formatIP(parseIP(a.local)!)))).map((l) => l.ifname))];
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot list interfaces');
      return [];
    }
  }

  /**
   * IPv4 early demux off (this network namespace): with it, the kernel ties a
   * pod's packet to this node's own TCP/UDP socket before routing, and then
   * refuses to forward it into the TUN (ip_forward drops an skb with a socket),
   * so every packet after a SYN from a pod to the node would be lost. Where it
   * cannot be turned off (a read-only /proc/sys in a container), a pod's packets
   * to its own node stay unchecked, as over IPv6.
   */
  private disableEarlyDemux(): boolean {
    const knob = '/proc/sys/net/ipv4/ip_early_demux';
    try {
      const was = readFileSync(knob, 'utf8').trim();
      if (was === '0') return true;
      execFileSync('sysctl', ['-qw', 'net.ipv4.ip_early_demux=0'], { stdio: ['ignore', 'ignore', 'pipe'] });
      this.earlyDemuxWas = was;
      return true;
    } catch (err) {
      this.log.warn({ err: String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim() }, 'cannot turn IPv4 early demux off: pods\' packets to this node\'s own addresses are not checked');
      return false;
    }
  }
}

/**
 * The node's router address: the first address of its IPv4 pod CIDR, put on
 * the TUN (Cilium's cilium_host). The L7 proxy listens on it and the gateway
 * connects from it; packets to it from remote nodes come through the tunnels.
 * Throws ConfigError without an IPv4 pod CIDR.
 */
export function setupRouterAddress(podCIDRs: string[], tun: string, log: Logger): string {
  const v4 = podCIDRs.map((c) => parsePrefix(c)).find((p) => p.addr.length === 4);
  if (!v4) throw new ConfigError('node.podCIDRs', 'mesh mode needs an IPv4 pod CIDR (its first address is the node\'s router address)');
  const first = Buffer.from(v4.addr);
  first[3]! += 1;
  const router = formatIP(first);
  ip(['addr', 'replace', `${router}/32`, 'dev', tun], log);
  // our own address comes back out of the TUN: the gateway's SYN to a local backend (hairpin)
  // (In a container /proc/sys is read-only: there the device inherits conf.default, set by the runtime.)
  const knob = `/proc/sys/net/ipv4/conf/${tun}/accept_local`;
  try {
    if (readFileSync(knob, 'utf8').trim() !== '1') execFileSync('sysctl', ['-qw', `net.ipv4.conf.${tun}.accept_local=1`]);
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot set accept_local on the TUN (in a container: sysctl net.ipv4.conf.default.accept_local=1): the gateway will not reach backends on this node');
  }
  return router;
}
