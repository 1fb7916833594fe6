/**
 * Admission's cost with the per-node endpoint bound (src/agent/endpointquota.ts), against another build:
 *
 *   node dist/bench/admission-quota.js [--base DIR] [--rounds 3]
 *
 * Two shapes, each in a fresh process per build and round, the builds alternating:
 *   normal  1,000 remote nodes x 20 endpoints, all under the bound: upserts, then deletes (the bound's
 *           bookkeeping on the common path)
 *   attack  one remote node registering 200,000 endpoints under its own name (the review's attack), then
 *           deleting them all: main admits every one; with the bound 1,024 are admitted, the rest held back,
 *           and each delete of an admitted one admits the one held back longest
 * Admission alone, with sinks that only count: the data path's cost per admitted endpoint (ipcache, policy
 * maps, services), which the bound saves in the attack, is not in these figures. Prints ms per phase.
 */
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

type Shape = 'normal' | 'attack';

async function child(dir: string, shape: Shape): Promise<void> {
  const load = (p: string) => import(resolve(dir, 'dist/src', p)) as Promise<Record<string, never>>;
  const { Admission } = (await load('agent/admission.js')) as unknown as { Admission: new (...a: unknown[]) => { upsert(k: string, key: string, c: string, r: unknown): void; remove(k: string, key: string): void } };
  const { Rejections } = (await load('controlplane/records/rejections.js')) as unknown as { Rejections: new () => unknown };
  const { Trust } = (await load('controlplane/records/trust.js')) as unknown as { Trust: new (n: string, id: number, c: string[]) => { pin(p: unknown): void; setLocalUnderlay(c: string[]): void } };
  const trust = new Trust('c1', 1, ['100.128.0.0/16']);
  // with underlay CIDRs (required since they exist): without, every node is refused and nothing is admitted
  trust.setLocalUnderlay(['198.19.0.0/16']);
  trust.pin({ name: 'c2', id: 2, podCIDRs: ['100.64.0.0/10'], underlayCIDRs: ['198.18.0.0/16'], relay: false, acceptPolicies: false });
  let admitted = 0;
  const a = new Admission(trust, new Rejections(), { node: () => {}, endpoint: (_k: string, r: unknown) => (r ? admitted++ : admitted--), identity: () => {}, relay: () => {} });
  const nodes = shape === 'normal' ? 1000 : 1;
  const per = shape === 'normal' ? 20 : 200_000;
  for (let n = 0; n < nodes; n++) {
    const cidr = shape === 'normal' ? `100.${64 + (n >> 8)}.${n & 255}.0/24` : '100.64.0.0/12';
    a.upsert('node', `wiremesh/cache/nodes/v1/c2/n${n}`, 'c2', { cluster: 'c2', clusterId: 2, name: `n${n}`, addresses: [`198.18.${n >> 8}.${n & 255}`], port: 51820, publicKey: Buffer.alloc(32, 0).fill(n & 255, 0, 1).fill(n >> 8, 1, 2).toString('base64'), podCIDRs: [cidr], bootId: '1' });
  }
  const ip = (n: number, i: number) => (shape === 'normal' ? `100.${64 + (n >> 8)}.${n & 255}.${i + 1}` : `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`);
  const keys: Array<[string, unknown]> = [];
  for (let n = 0; n < nodes; n++)
    for (let i = 0; i < per; i++) {
      const addr = ip(n, i);
      keys.push([`wiremesh/cache/ip/v2/c2/n${n}/${addr}`, { ip: addr, cluster: 'c2', node: `n${n}`, namespace: 'ns', name: `p${i}`, labels: { app: 'x' } }]);
    }
  let t = performance.now();
  for (const [k, r] of keys) a.upsert('endpoint', k, 'c2', r);
  const up = performance.now() - t;
  const peak = admitted;
  t = performance.now();
  for (const [k] of keys) a.remove('endpoint', k);
  const del = performance.now() - t;
  console.log(JSON.stringify({ upsertMs: Math.round(up), deleteMs: Math.round(del), admitted: peak, left: admitted }));
}

function main(): void {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1]! : dflt;
  };
  if (args[0] === '--child') return void child(args[1]!, args[2] as Shape);
  const here = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const builds: Array<[string, string]> = [['this', here], ...(args.includes('--base') ? [['base', resolve(opt('--base', ''))] as [string, string]] : [])];
  const rounds = Number(opt('--rounds', '3'));
  for (const shape of ['normal', 'attack'] as Shape[])
    for (let r = 0; r < rounds; r++)
      for (const [name, dir] of r % 2 ? [...builds].reverse() : builds) {
        const out = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', dir, shape], { encoding: 'utf8' });
        console.log(`${shape}\t${name}\tround ${r}\t${out.stdout.trim() || out.stderr.trim().split('\n').slice(-3).join(' ')}`);
      }
}

main();
