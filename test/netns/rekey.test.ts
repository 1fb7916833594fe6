// A real rekey: RekeyAfterTime is 120 s, so this test keeps a ping running for
// 130 s and checks that a new handshake took place with no packet lost.
import { afterAll, describe, expect, it } from 'vitest';
import { canRunNetns, cleanup, hasCommand, link, Netns, startWireGuard, uniqueName, wgConfigure, wgKeypair } from '../helpers/netns.js';

const enabled = canRunNetns() && hasCommand('wireguard-go') && process.env.WIREMESH_SKIP_SLOW !== '1';

describe.skipIf(!enabled)('rekey under traffic', () => {
  afterAll(cleanup);
  it('rekeys after 120 s against wireguard-go without losing packets', { timeout: 200_000 }, async () => {
    const nsA = new Netns('rkA');
    const nsB = new Netns('rkB');
    link(nsA, uniqueName('ra'), ['198.18.3.1/24'], nsB, uniqueName('rb'), ['198.18.3.2/24']);
    const ifA = uniqueName('wr');
    const ifB = uniqueName('wr');
    startWireGuard(nsA, 'wiremesh', ifA);
    startWireGuard(nsB, 'wireguard-go', ifB);
    const [ka, kb] = [wgKeypair(nsA), wgKeypair(nsB)];
    wgConfigure(nsA, ifA, { privateKey: ka.privateKey, port: 51840, peer: kb.publicKey, endpoint: '198.18.3.2:51841', allowedIPs: ['100.64.11.2/32'], addresses: ['100.64.11.1/24'] });
    wgConfigure(nsB, ifB, { privateKey: kb.privateKey, port: 51841, peer: ka.publicKey, endpoint: '198.18.3.1:51840', allowedIPs: ['100.64.11.1/32'], addresses: ['100.64.11.2/24'] });
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
