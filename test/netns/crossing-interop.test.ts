// Crossed initiations against the real wireguard-go (noise.ts consumeInitiation keeps ours while it answers the
// peer's; wireguard-go keeps one state per peer and overwrites its own). Made to happen: wireguard-go is stopped
// (SIGSTOP) while our side sends an initiation (it waits in wireguard-go's socket) and a packet is queued on its
// TUN device; on SIGCONT its TUN reader and its handshake worker race, and when the TUN reader wins it sends an
// initiation of its own before it answers ours: the two cross. Attempts repeat (peers removed and added on both
// sides, no session left) until our side counts a crossed initiation. The oracle: the ping wireguard-go sent in
// that attempt is answered, and traffic passes both ways after, with stock wg(8) reporting a handshake.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunNetns, cleanup, hasCommand, link, Netns, startWireGuard, stats, uniqueName, wgConfigure, wgKeypair } from '../helpers/netns.js';

const enabled = canRunNetns() && hasCommand('wireguard-go') && hasCommand('wg');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!enabled)('crossed initiations: wiremesh-wg ↔ wireguard-go', () => {
  const ours = { ns: undefined as unknown as Netns, ifname: uniqueName('wm'), key: '', pub: '', port: 51820, underlay: '198.18.3.1', inner: '100.64.19.1' };
  const theirs = { ns: undefined as unknown as Netns, ifname: uniqueName('wg'), key: '', pub: '', port: 51821, underlay: '198.18.3.2', inner: '100.64.19.2' };
  let wgGoPid = 0;

  /** (Re)adds each side's peer: no session, no handshake state left from an earlier attempt. */
  const peers = (first: boolean) => {
    for (const [self, other] of [[ours, theirs], [theirs, ours]] as const) {
      if (!first) self.ns.run('wg', 'set', self.ifname, 'peer', other.pub, 'remove');
      if (first) wgConfigure(self.ns, self.ifname, { privateKey: self.key, port: self.port, peer: other.pub, endpoint: `${other.underlay}:${other.port}`, allowedIPs: [`${other.inner}/32`], addresses: [`${self.inner}/24`] });
      else self.ns.run('wg', 'set', self.ifname, 'peer', other.pub, 'endpoint', `${other.underlay}:${other.port}`, 'allowed-ips', `${other.inner}/32`);
    }
  };

  beforeAll(() => {
    ours.ns = new Netns('wmX');
    theirs.ns = new Netns('wgX');
    link(ours.ns, uniqueName('vx'), [`${ours.underlay}/24`], theirs.ns, uniqueName('vy'), [`${theirs.underlay}/24`]);
    for (const s of [ours, theirs]) Object.assign(s, (({ privateKey, publicKey }) => ({ key: privateKey, pub: publicKey }))(wgKeypair(s.ns)));
    startWireGuard(ours.ns, 'wiremesh', ours.ifname);
    startWireGuard(theirs.ns, 'wireguard-go', theirs.ifname);
    wgGoPid = Number(execFileSync('pgrep', ['-f', `^wireguard-go ${theirs.ifname}$`], { encoding: 'utf8' }).trim().split('\n')[0]);
    expect(wgGoPid).toBeGreaterThan(0);
    peers(true);
  }, 30_000);

  afterAll(() => {
    if (wgGoPid) process.kill(wgGoPid, 'SIGCONT');
    cleanup();
  });

  it('a crossing happens within 12 attempts, the peer answered and its ping through; traffic both ways after', async () => {
    let crossedIn = -1;
    for (let attempt = 0; attempt < 12 && crossedIn < 0; attempt++) {
      if (attempt > 0) peers(false);
      const before = (await stats(ours.ifname)).initiations_crossed ?? 0;
      process.kill(wgGoPid, 'SIGSTOP');
      try {
        const ourPing = ours.ns.spawn('ping', ['-c', '1', '-W', '3', theirs.inner]); // our initiation: waits in its socket
        await sleep(300);
        const theirPing = theirs.ns.spawn('ping', ['-c', '1', '-W', '3', ours.inner]); // waits on its TUN device
        await sleep(300);
        process.kill(wgGoPid, 'SIGCONT');
        const [, theirOk] = await Promise.all([ourPing, theirPing].map((p) => new Promise<boolean>((r) => p.once('exit', (code) => r(code === 0)))));
        if (((await stats(ours.ifname)).initiations_crossed ?? 0) > before) {
          crossedIn = attempt;
          expect(theirOk, `attempt ${attempt}: wireguard-go's ping across the crossed handshakes`).toBe(true);
        }
      } finally {
        process.kill(wgGoPid, 'SIGCONT');
      }
    }
    expect(crossedIn).toBeGreaterThanOrEqual(0);
    expect(ours.ns.try('ping', '-c', '2', '-i', '0.2', '-W', '2', theirs.inner).ok).toBe(true);
    expect(theirs.ns.try('ping', '-c', '2', '-i', '0.2', '-W', '2', ours.inner).ok).toBe(true);
    const hs = Number(theirs.ns.run('wg', 'show', theirs.ifname, 'latest-handshakes').trim().split(/\s+/)[1]);
    expect(hs).toBeGreaterThan(0);
  }, 120_000);
});
