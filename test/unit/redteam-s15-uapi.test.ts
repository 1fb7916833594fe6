/**
 * Red team s15, the UAPI socket (principal: whoever may write /var/run/wireguard/IFNAME.sock, i.e. the
 * operator's `wg`/`wg-quick`). Oracle: the cross-platform UAPI (wireguard.com/xplatform) and wireguard-go,
 * which take a `set` of any number of `allowed_ip` lines and give an address to one peer only (cryptokey
 * routing, whitepaper §2). Before s15 a request over 1 MiB was cut (a `wg setconf` of 100,000 allowed IPs is
 * ~2.3 MB), and merging the lines scanned the list per line: 20,000 lines blocked the event loop ~17 s and
 * moving them to another peer ~56 s, while no handshake of any peer was answered.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { MAX_REQUEST_CHARS, MAX_UAPI_CONNECTIONS, serveUapi } from '../../src/wireguard/uapi.js';

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0).reverse()) c();
});

async function served(): Promise<{ dev: WireGuardDevice; path: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'wm-uapi-'));
  const dev = new WireGuardDevice({ createTun: false, tickMs: 0 });
  const path = join(dir, 'wm-s15.sock');
  const server: Server = await serveUapi(dev, 'wm-s15', path);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }), () => dev.close(), () => server.close());
  return { dev, path };
}

/** Sends one request, resolves with the answer, or with null when the device closes the connection unanswered. */
function ask(path: string, request: string): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let answer = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => {
      answer += d;
      if (answer.endsWith('\n\n')) c.end(), resolve(answer);
    });
    c.on('close', () => resolve(answer.endsWith('\n\n') ? answer : null));
    c.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EPIPE' || err.code === 'ECONNRESET' ? resolve(null) : reject(err)));
    c.write(request);
  });
}

const hexKey = () => publicFromPrivate(generatePrivateKey()).toString('hex');
/** n distinct host prefixes in 100.64.0.0/10 (`wg showconf` spelling). */
const hosts = (n: number) => Array.from({ length: n }, (_, i) => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`);

describe('red team s15: UAPI set requests of many allowed IPs', () => {
  it('a set of 100,000 allowed IPs is applied, and moving them all to another peer leaves none with the first', async () => {
    const { dev, path } = await served();
    const [a, b] = [hexKey(), hexKey()];
    const ips = hosts(100_000);
    const set = (peer: string) => `set=1\npublic_key=${peer}\nreplace_allowed_ips=true\n${ips.map((p) => `allowed_ip=${p}\n`).join('')}\n`;
    expect(set(a).length).toBeGreaterThan(1 << 20);
    expect(await ask(path, set(a))).toBe('errno=0\n\n');
    expect(dev.peers.get(a)!.allowedIPs.length).toBe(100_000);
    expect(await ask(path, set(b))).toBe('errno=0\n\n');
    expect(dev.peers.get(b)!.allowedIPs.length).toBe(100_000);
    expect(dev.peers.get(a)!.allowedIPs.length).toBe(0);
    const get = (await ask(path, 'get=1\n\n'))!;
    const [, peerA, peerB] = get.split('public_key=');
    expect(peerA!.startsWith(a) ? peerA!.includes('allowed_ip=') : peerB!.includes('allowed_ip=')).toBe(false);
    expect(get.split('allowed_ip=').length - 1).toBe(100_000);
    // repeated lines are one prefix, as in wireguard-go
    expect(await ask(path, `set=1\npublic_key=${a}\nallowed_ip=100.127.0.1/32\nallowed_ip=100.127.0.1/32\n\n`)).toBe('errno=0\n\n');
    expect(dev.peers.get(a)!.allowedIPs.length).toBe(1);
  });

  it('a request past the bound is cut unanswered; one just under it is answered', async () => {
    const { path } = await served();
    const line = 'allowed_ip=100.64.0.1/32\n';
    const peer = `set=1\npublic_key=${hexKey()}\n`;
    const lines = (max: number) => Math.floor((max - peer.length - 1) / line.length);
    expect(await ask(path, peer + line.repeat(lines(MAX_REQUEST_CHARS)) + '\n')).toBe('errno=0\n\n');
    expect(await ask(path, peer + line.repeat(lines(MAX_REQUEST_CHARS) + 2) + '\n')).toBeNull();
  });

  it('finds a request end wherever the chunks split it (even between its two newlines), and pipelined requests', async () => {
    const { dev, path } = await served();
    const key = hexKey();
    const set = `set=1\npublic_key=${key}\nallowed_ip=100.64.9.1/32\n\n`;
    // one character per write: the socket hands the server each as its own chunk or several together
    const answer = await new Promise<string>((resolve, reject) => {
      const c = createConnection(path);
      let got = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => {
        got += d;
        if (got.split('errno=').length === 3) c.end(), resolve(got);
      });
      c.on('error', reject);
      c.once('connect', async () => {
        for (const ch of set.slice(0, -1)) await new Promise<void>((r) => c.write(ch, () => setImmediate(r)));
        c.write('\nget=1\n\n'); // the set's last newline and the next request in one chunk
      });
    });
    expect(answer.startsWith('errno=0\n\n')).toBe(true);
    expect(answer).toContain('allowed_ip=100.64.9.1/32\n');
    expect(dev.peers.get(key)!.allowedIPs.length).toBe(1);
  });

  it(`serves ${MAX_UAPI_CONNECTIONS} connections at once; one more is closed at accept`, async () => {
    const { path } = await served();
    const held = await Promise.all(
      Array.from({ length: MAX_UAPI_CONNECTIONS }, () => new Promise<ReturnType<typeof createConnection>>((resolve) => {
        const c = createConnection(path, () => resolve(c));
      })),
    );
    cleanups.push(() => held.forEach((c) => c.destroy()));
    expect(await ask(path, 'get=1\n\n')).toBeNull();
    held[0]!.destroy();
    await new Promise((r) => held[0]!.once('close', r));
    let answer: string | null = null;
    while (answer === null) answer = await ask(path, 'get=1\n\n'); // the server sees the close after the client
    expect(answer).toMatch(/errno=0\n\n$/);
  });
});
