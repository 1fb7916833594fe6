/**
 * What a node over its endpoint bound costs an agent's admission in memory (src/agent/endpointquota.ts), against
 * another build:
 *
 *   node dist/bench/heldback-memory.js [--base DIR] [--held 50000] [--rounds 2]
 *
 * One remote node: 1,024 endpoints admitted and `--held` more held back, each record with 20 labels (a pod's usual
 * few plus Kubernetes' own). Heap retained after a forced GC, in a fresh process per build and round (builds
 * alternating), the key strings kept alive in both (the watch holds them anyway). The admission object is used
 * after the measurement: unused, V8 collected it before the GC and the figure was only the keys'.
 */
import { spawnSync } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

type Loaded = Record<string, new (...a: unknown[]) => Record<string, (...a: unknown[]) => unknown> & { quota: { refetch?: unknown; status(): unknown } }>;

async function child(dir: string, held: number): Promise<void> {
  const load = async (p: string) => (await import(resolve(dir, 'dist/src', p))) as Loaded;
  const { Admission } = await load('agent/admission.js');
  const { Rejections } = await load('controlplane/records/rejections.js');
  const { Trust } = await load('controlplane/records/trust.js');
  const trust = new Trust!('c1', 1, ['100.128.0.0/16']);
  trust.setLocalUnderlay!(['198.19.0.0/16']);
  trust.pin!({ name: 'c2', id: 2, podCIDRs: ['100.64.0.0/10'], underlayCIDRs: ['198.18.0.0/16'], relay: false, acceptPolicies: false });
  const a = new Admission!(trust, new Rejections!(), { node: () => {}, endpoint: () => {}, identity: () => {}, relay: () => {} });
  a.quota.refetch = () => {}; // as the agent sets it (agent/refetch.ts); a build without it ignores it
  a.upsert!('node', 'wiremesh/cache/nodes/v1/c2/n0', 'c2', { cluster: 'c2', clusterId: 2, name: 'n0', addresses: ['198.18.0.1'], port: 51820, publicKey: Buffer.alloc(32, 1).toString('base64'), podCIDRs: ['100.64.0.0/12'], bootId: '1' });
  const gc = (globalThis as { gc?: () => void }).gc!;
  gc();
  const before = process.memoryUsage().heapUsed;
  const keys: string[] = [];
  for (let i = 0; i < 1024 + held; i++) {
    const ip = `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
    const key = `wiremesh/cache/ip/v2/c2/n0/${ip}`;
    keys.push(key);
    const labels = Object.fromEntries(Array.from({ length: 20 }, (_, l) => [`label-${l}`, `value-${l}-${(i * 31 + l).toString(36)}`]));
    a.upsert!('endpoint', key, 'c2', { ip, cluster: 'c2', node: 'n0', namespace: 'ns', name: `pod-${i}`, labels });
  }
  gc();
  const retained = process.memoryUsage().heapUsed - before;
  console.log(JSON.stringify({ heapMB: +(retained / 2 ** 20).toFixed(1), perEndpointB: Math.round(retained / (1024 + held)), keys: keys.length, status: a.quota.status() }).slice(0, 160));
}

function main(): void {
  const args = process.argv.slice(2);
  const opt = (name: string, dflt: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1]! : dflt;
  };
  if (args[0] === '--child') return void child(args[1]!, Number(args[2]));
  const here = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
  const builds: Array<[string, string]> = [['this', here], ...(args.includes('--base') ? [['base', resolve(opt('--base', ''))] as [string, string]] : [])];
  const held = opt('--held', '50000');
  for (let r = 0; r < Number(opt('--rounds', '2')); r++)
    for (const [name, dir] of r % 2 ? [...builds].reverse() : builds) {
      const out = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', dir, held], { encoding: 'utf8' });
      console.log(`${name}\tround ${r}\t${out.stdout.trim() || out.stderr.trim().split('\n').slice(-3).join(' ')}`);
    }
}

main();
