// A real rekey: RekeyAfterTime is 120 s, so this test keeps a ping running for
// 130 s and checks that a new handshake took place with no packet lost.
import { afterAll, describe, expect, it } from 'vitest';
import { canRunNetns, cleanup, hasCommand, link, Netns, trackInterface, uniqueName, WIREMESH_WG } from '../helpers/netns.js';

const enabled = canRunNetns() && hasCommand('wireguard-go') && process.env.WIREMESH_SKIP_SLOW !== '1';

describe.skipIf(!enabled)('rekey under traffic', () => {
  afterAll(cleanup);
  it('rekeys after 120 s against wireguard-go without losing packets', { timeout: 200_000 }, async () => {
    const nsA = new Netns('rkA');
    const nsB = new Netns('rkB');
    link(nsA, uniqueName('ra'), ['198.18.3.1/24'], nsB, uniqueName('rb'), ['198.18.3.2/24']);
    const ifA = trackInterface(uniqueName('wr'));
    const ifB = trackInterface(uniqueName('wr'));
    nsA.run(process.execPath, WIREMESH_WG, ifA);
    nsB.run('sh', '-c', `WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1 wireguard-go ${ifB} >/dev/null 2>&1`);
    const keys = [nsA, nsB].map((ns) => {
      const k = ns.run('wg', 'genkey').trim();
      return { k, p: ns.run('sh', '-c', `echo ${k} | wg pubkey`).trim() };
    });
    for (const [ns, ifn, me, port, peerPort, peerAddr] of [[nsA, ifA, 0, 51840, 51841, '198.18.3.2'], [nsB, ifB, 1, 51841, 51840, '198.18.3.1']] as const) {
      ns.run('sh', '-c', `echo ${keys[me]!.k} > /dev/shm/${ifn}.key && wg set ${ifn} private-key /dev/shm/${ifn}.key listen-port ${port} peer ${keys[1 - me]!.p} endpoint ${peerAddr}:${peerPort} allowed-ips 100.64.11.${2 - me}/32; rm -f /dev/shm/${ifn}.key`);
      ns.ip('addr', 'add', `100.64.11.${me + 1}/24`, 'dev', ifn);
      ns.ip('link', 'set', ifn, 'up');
    }
    expect(nsA.try('ping', '-c', '1', '-W', '2', '100.64.11.2').ok).toBe(true);
    const first = Number(nsA.run('wg', 'show', ifA, 'latest-handshakes').trim().split(/\s+/)[1]);
    // 130 s of pings, 5 per second
    const out = nsA.try('ping', '-c', '650', '-i', '0.2', '-W', '2', '100.64.11.2').out;
    const last = Number(nsA.run('wg', 'show', ifA, 'latest-handshakes').trim().split(/\s+/)[1]);
    expect(last).toBeGreaterThanOrEqual(first + 115);
    const m = /(\d+) packets transmitted, (\d+) received/.exec(out)!;
    expect(Number(m[2])).toBe(Number(m[1]));
  });
});
