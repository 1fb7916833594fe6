/**
 * The UAPI's allowed-IPs paths on the real addon (s35, docs/benchmarks.md): `get` of one peer holding N allowed IPs
 * (read back from the addon's table since s35), and one `set` of N one-line blocks for one peer without
 * replace_allowed_ips (each block's lines inserted since s35; before, each block read the peer's list back and set
 * it again: O(N²)); a get's time is the median of five after one to warm up. This build against another's dist
 * (--base DIR, default /work/main), each in a child process of its own so that each loads its own addon; rounds
 * alternate the builds' order; medians in ms and this/base.
 *
 * Usage: node dist/bench/uapi-allowedips.js [--base /work/main] [--prefixes 100000] [--blocks 2000] [--rounds 3]
 */
import { execFileSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { arg, compareBuilds } from './util.js';

/** Another build's modules, loaded by path (their types may differ from this build's). */
type Any = any;
type Reading = { getMs: number; setBlocksMs: number };

const ms = (since: bigint): number => Number(process.hrtime.bigint() - since) / 1e6;
const host = (i: number): string => `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}/32`;

async function measure(dir: string, prefixes: number, blocks: number): Promise<Reading> {
  const load = (m: string): Promise<Any> => import(resolve(dir, 'dist', m));
  const { WireGuardDevice } = await load('src/wireguard/device.js');
  const { formatGet, handleRequest } = await load('src/wireguard/uapi.js');
  const { generatePrivateKey, publicFromPrivate } = await load('src/wireguard/crypto.js');
  const dev = new WireGuardDevice({ createTun: false, tickMs: 0 });
  try {
    const key = () => publicFromPrivate(generatePrivateKey()).toString('hex');
    const a = key();
    const ips = Array.from({ length: prefixes }, (_, i) => `allowed_ip=${host(i)}`);
    const set = ['set=1', `public_key=${a}`, 'replace_allowed_ips=true', ...ips];
    if (handleRequest(dev, set) !== 'errno=0\n\n') throw new Error('set refused');
    const gets: number[] = [];
    for (let r = 0; r < 6; r++) {
      const t = process.hrtime.bigint();
      if (formatGet(dev).length < prefixes * 20) throw new Error('get short');
      if (r > 0) gets.push(ms(t)); // the first warms up
    }
    const getMs = gets.sort((x, y) => x - y)[2]!;
    const b = key();
    const lines = ['set=1'];
    for (let i = 0; i < blocks; i++) lines.push(`public_key=${b}`, `allowed_ip=${host(prefixes + i)}`);
    const t = process.hrtime.bigint();
    if (handleRequest(dev, lines) !== 'errno=0\n\n') throw new Error('blocks refused');
    return { getMs, setBlocksMs: ms(t) };
  } finally {
    dev.close();
  }
}

const prefixes = Number(arg('prefixes', '100000'));
const blocks = Number(arg('blocks', '2000'));
if (process.env.UAPI_BENCH_CHILD) {
  console.log(JSON.stringify(await measure(process.env.UAPI_BENCH_CHILD, prefixes, blocks)));
} else {
  const here = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const dirs = { this: here, base: resolve(arg('base', '/work/main')) };
  const child = (which: 'this' | 'base'): Reading => {
    const env = { ...process.env, UAPI_BENCH_CHILD: dirs[which] };
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    return JSON.parse(out);
  };
  console.log(`ms (get: one peer with ${prefixes} allowed IPs; set: ${blocks} one-line blocks for one peer) | get | set blocks`);
  compareBuilds('uapi', Number(arg('rounds', '3')), ['getMs', 'setBlocksMs'], child);
}
