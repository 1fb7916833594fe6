// Stock wg-quick drives wiremesh-wg through WG_QUICK_USERSPACE_IMPLEMENTATION,
// exactly as it drives wireguard-go on a kernel without the module.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { canRunNetns, cleanup, hasCommand, link, Netns, trackInterface, uniqueName, waitFor, wgKeypair, ROOT } from '../helpers/netns.js';

const enabled = canRunNetns() && hasCommand('wg-quick') && hasCommand('wireguard-go');

describe.skipIf(!enabled)('wg-quick up/down with wiremesh-wg', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wmq-'));
  afterAll(() => {
    cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  it('brings the interface up from a config file, carries traffic, and tears it down', async () => {
    const nsA = new Netns('wqA');
    const nsB = new Netns('wqB');
    link(nsA, uniqueName('qa'), ['198.18.2.1/24'], nsB, uniqueName('qb'), ['198.18.2.2/24']);
    const ka = wgKeypair(nsA);
    const kb = wgKeypair(nsB);
    const a = { k: ka.privateKey, p: ka.publicKey };
    const b = { k: kb.privateKey, p: kb.publicKey };
    const ifA = trackInterface(uniqueName('wq'));
    const ifB = trackInterface(uniqueName('wq'));
    const confA = join(dir, `${ifA}.conf`);
    const confB = join(dir, `${ifB}.conf`);
    writeFileSync(confA, `[Interface]\nPrivateKey = ${a.k}\nListenPort = 51830\nAddress = 100.64.10.1/24\n\n[Peer]\nPublicKey = ${b.p}\nEndpoint = 198.18.2.2:51831\nAllowedIPs = 100.64.10.2/32\nPersistentKeepalive = 25\n`, { mode: 0o600 });
    writeFileSync(confB, `[Interface]\nPrivateKey = ${b.k}\nListenPort = 51831\nAddress = 100.64.10.2/24\n\n[Peer]\nPublicKey = ${a.p}\nAllowedIPs = 100.64.10.1/32\n`, { mode: 0o600 });
    const impl = join(ROOT, 'bin', 'wiremesh-wg.js');
    const up = (ns: Netns, conf: string, userspace: string) =>
      execFileSync('ip', ['netns', 'exec', ns.name, 'env', `WG_QUICK_USERSPACE_IMPLEMENTATION=${userspace}`, 'WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1', 'wg-quick', 'up', conf], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    up(nsA, confA, impl);
    up(nsB, confB, 'wireguard-go');
    expect(nsA.ip('-o', 'addr', 'show', 'dev', ifA)).toContain('100.64.10.1/24');
    expect(nsA.ip('link', 'show', ifA)).toMatch(/mtu 1420/);
    // persistent keepalive on our side starts the handshake by itself
    await waitFor(() => Number(nsB.run('wg', 'show', ifB, 'latest-handshakes').trim().split(/\s+/)[1]) > 0, 10_000, 'handshake');
    expect(nsB.try('ping', '-c', '2', '-W', '2', '100.64.10.1').ok).toBe(true);
    const shown = nsA.run('wg', 'showconf', ifA);
    expect(shown).toContain(`PublicKey = ${b.p}`);
    expect(shown).toContain('PersistentKeepalive = 25');
    execFileSync('ip', ['netns', 'exec', nsA.name, 'wg-quick', 'down', confA], { stdio: 'ignore' });
    await waitFor(() => !nsA.try('pgrep', '-f', `wiremesh-wg.js ${ifA}`).ok, 5000, 'daemon exit');
    expect(nsA.try('ip', 'link', 'show', ifA).ok).toBe(false);
  });
});
