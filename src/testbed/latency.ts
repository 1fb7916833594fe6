/**
 * Underlay latency between testbed nodes. This kernel has no netem, so a node
 * gets a delay line instead: a TUN device (owned by a `wiremesh testbed
 * delay-line` process in the node's namespace, native/src/net/delayline.cc)
 * that routes the node's packets to the chosen cluster's node addresses and
 * hands each back to the kernel after the delay. Packets written back count as
 * received on the TUN; policy routing (iif <tun> -> table 2010, the plain
 * underlay route) sends them out of eth0. The delay applies to the node's
 * outgoing direction: the round trip grows by it.
 *
 *   main:  <remote node>/32 dev wmdly<id> src <node address>
 *   rule:  pref 1000 iif wmdly<id> lookup 2010
 *   2010:  <underlay> dev eth0
 *
 * With a share below 1 only that share of the packets takes the detour (the
 * rest go straight), so the far end sees them out of order: nftables marks a
 * random share of the WireGuard packets to that cluster (numgen), and
 *   rule:  pref 999 fwmark 0x2011 lookup 2011
 *   2011:  <remote node>/32 dev wmdly<id> src <node address>
 */
import { execFileSync } from 'node:child_process';
import { TestbedError } from '../errors.js';
import { spawnIn, WIREMESH, type TestbedState } from './state.js';
import { stopRole } from './roles.js';

const TABLE = '2010';
const MARK_TABLE = '2011';
const MARK = '0x2011';

function ipIn(netns: string, args: string[], ignoreErrors = false): void {
  try {
    execFileSync('ip', ['netns', 'exec', netns, ...args], { stdio: 'ignore' });
  } catch (err) {
    if (!ignoreErrors) throw new TestbedError('WM_TESTBED_LATENCY', `${args.join(' ')} in ${netns}: ${(err as Error).message}`);
  }
}

/** Adds `ms` of latency from node cluster/node toward every node of cluster `to`; returns the remover. */
export async function addLatency(st: TestbedState, cluster: string, node: string, to: string, ms: number, share = 1): Promise<() => Promise<void>> {
  const n = st.clusters.find((c) => c.name === cluster)?.nodes.find((x) => x.name === node);
  const dst = st.clusters.find((c) => c.name === to);
  if (!n || !dst) throw new TestbedError('WM_TESTBED_TARGET', `no node ${cluster}/${node} or cluster ${to}`);
  const tun = `wmdly${dst.id}`;
  const role = `delay-${cluster}-${node}-${to}`;
  spawnIn(st, n.netns, role, [process.execPath, WIREMESH, 'testbed', 'delay-line', tun, String(ms)]);
  const end = Date.now() + 10_000;
  for (;;) {
    try {
      execFileSync('ip', ['netns', 'exec', n.netns, 'ip', 'link', 'show', 'dev', tun], { stdio: 'ignore' });
      break;
    } catch {
      if (Date.now() > end) throw new TestbedError('WM_TESTBED_LATENCY', `delay line ${tun} did not appear in ${n.netns}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  ipIn(n.netns, ['ip', 'link', 'set', tun, 'up']);
  ipIn(n.netns, ['sysctl', '-qw', `net.ipv4.conf.${tun}.accept_local=1`, `net.ipv4.conf.${tun}.rp_filter=0`]);
  const underlay = execFileSync('ip', ['netns', 'exec', n.netns, 'ip', '-4', '-o', 'route', 'show', 'dev', 'eth0', 'proto', 'kernel'], { encoding: 'utf8' }).trim().split(/\s+/)[0]!;
  ipIn(n.netns, ['ip', 'route', 'replace', underlay, 'dev', 'eth0', 'table', TABLE]);
  ipIn(n.netns, ['ip', 'rule', 'add', 'pref', '1000', 'iif', tun, 'lookup', TABLE]);
  const partial = share < 1;
  for (const d of dst.nodes) ipIn(n.netns, ['ip', 'route', 'replace', `${d.address}/32`, 'dev', tun, 'src', n.address, ...(partial ? ['table', MARK_TABLE] : [])]);
  const nftTable = `wmreorder${dst.id}`;
  if (partial) {
    const pct = Math.max(1, Math.min(99, Math.round(share * 100)));
    const rules = `table ip ${nftTable} {\n chain out {\n  type route hook output priority 0;\n  ip daddr { ${dst.nodes.map((d) => d.address).join(', ')} } udp dport 51820 numgen random mod 100 < ${pct} meta mark set ${MARK}\n }\n}\n`;
    execFileSync('ip', ['netns', 'exec', n.netns, 'nft', '-f', '-'], { input: rules, stdio: ['pipe', 'ignore', 'pipe'] });
    ipIn(n.netns, ['ip', 'rule', 'add', 'pref', '999', 'fwmark', MARK, 'lookup', MARK_TABLE]);
  }
  return async () => {
    if (partial) {
      ipIn(n.netns, ['nft', 'delete', 'table', 'ip', nftTable], true);
      ipIn(n.netns, ['ip', 'rule', 'del', 'pref', '999', 'fwmark', MARK, 'lookup', MARK_TABLE], true);
    }
    ipIn(n.netns, ['ip', 'rule', 'del', 'pref', '1000', 'iif', tun, 'lookup', TABLE], true);
    await stopRole(st, role, 'SIGTERM'); // the TUN and its routes go with the process
  };
}

/** The delay-line process: runs until SIGTERM. */
export async function runDelayLine(tun: string, ms: number): Promise<void> {
  const { testhooks } = await import('../native/testhooks.js'); // the delay line is test infrastructure, not in the product addon
  const line = new testhooks.DelayLine(tun, ms);
  const keepAlive = setInterval(() => undefined, 1 << 30); // the line's thread does not hold the event loop
  await new Promise<void>((resolve) => {
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.once(sig, () => resolve());
  });
  clearInterval(keepAlive);
  line.close();
}
