// The docker-compose testbed (docker/compose.yaml): builds the base image
// locally (docker/build-base-image.sh, no registry here), the wiremesh image,
// brings up 2 clusters x 2 nodes with etcd (mutual TLS, RBAC) and kvstoremesh per
// cluster, checks cross-cluster connectivity, a node's etcd rights, policy and the
// global service, and tears it all
// down. Starts dockerd (--bip in 198.19.0.0/16) when none runs, and stops only
// the one it started. Skips when docker, docker-compose or debootstrap are
// missing or dockerd cannot start. One run at a time per machine (the underlay
// subnet is fixed): it holds a host lock from before dockerd to after it stops,
// and, holding it, takes down what a killed earlier run left (wmtest* projects).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireHostLock, type HostLock } from '../../src/testbed/hostlock.js';
import { hasCommand, ROOT, waitFor } from '../../src/testbed/netns.js';
import { alive } from '../../src/testbed/state.js';

const COMPOSE = join(ROOT, 'docker', 'compose.yaml');
const PROJECT = `wmtest${process.pid % 100000}`;
const isRoot = process.getuid?.() === 0;
const enabled = isRoot && hasCommand('dockerd') && hasCommand('docker-compose') && hasCommand('debootstrap') && hasCommand('flock') && process.env.WIREMESH_SKIP_DOCKER !== '1';

function run(cmd: string, args: string[], timeoutMs = 120_000): { ok: boolean; out: string } {
  try {
    return { ok: true, out: execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, cwd: ROOT }) };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    return { ok: false, out: `${e.stdout ?? ''}${e.stderr ?? e.message}` };
  }
}
const compose = (args: string[], timeoutMs?: number) => run('docker-compose', ['-f', COMPOSE, '-p', PROJECT, ...args], timeoutMs);
const inNode = (node: string, cmd: string[]) => compose(['exec', '-T', node, ...cmd], 30_000);
const ask = (node: string, pod: string, host: string, port = 8080) => {
  const r = inNode(node, ['ip', 'netns', 'exec', `pod-${pod}`, 'node', '/opt/wiremesh/dist/src/chaos/probe.js', 'ask', host, String(port)]);
  return r.ok ? (JSON.parse(r.out.trim().split('\n').pop()!) as { ok: boolean; name?: string; error?: string }) : { ok: false as boolean, error: r.out.slice(-300) };
};
let dockerd: ChildProcess | undefined;
let dockerUp = false;
let lock: HostLock | undefined;

/**
 * Holding the lock, a wmtest<pid> project whose process is gone is a killed
 * run's leftover (a live one belongs to a run that took no lock: left alone).
 */
function downLeftovers(): void {
  const labels = run('docker', ['ps', '-a', '--format', '{{.Label "com.docker.compose.project"}}']).out;
  const nets = run('docker', ['network', 'ls', '--format', '{{.Label "com.docker.compose.project"}}']).out;
  for (const p of new Set(`${labels}\n${nets}`.split('\n').map((l) => l.trim()))) {
    const m = /^wmtest(\d+)$/.exec(p);
    if (!m || p === PROJECT || alive(Number(m[1]))) continue;
    run('docker-compose', ['-f', COMPOSE, '-p', p, 'down', '-v', '--remove-orphans'], 300_000);
    // networks an older compose file named otherwise
    for (const id of run('docker', ['network', 'ls', '-q', '--filter', `label=com.docker.compose.project=${p}`]).out.split('\n').filter(Boolean)) run('docker', ['network', 'rm', id]);
  }
}

describe.skipIf(!enabled)('the docker-compose testbed', () => {
  // its own hook, so that waiting for another run does not eat the setup's time; in /run (root's alone, not
  // the world-writable /run/lock, where anyone could hold it or plant a symlink for root to create)
  beforeAll(async () => {
    lock = await acquireHostLock('/run/wiremesh-docker-test.lock', 1_200_000);
  }, 1_260_000);

  beforeAll(async () => {
    if (!run('docker', ['info']).ok) {
      // our own dockerd; its default bridge in 198.19.0.0/16, never the private ranges
      dockerd = spawn('dockerd', ['--bip', '198.19.0.1/16', '--pidfile', '/run/wiremesh-test-dockerd.pid'], { stdio: 'ignore' });
      dockerUp = await waitFor(() => run('docker', ['info']).ok, 30_000, 'dockerd').then(() => true, () => false);
      if (!dockerUp) console.warn('dockerd did not start: the docker-compose tests are skipped');
    } else dockerUp = true;
    if (!dockerUp) return;
    downLeftovers();
    const base = run('bash', [join(ROOT, 'docker', 'build-base-image.sh')], 900_000);
    if (!base.ok) throw new Error(`base image: ${base.out.slice(-2000)}`);
    const img = run('docker', ['build', '-q', '-f', 'docker/Dockerfile', '-t', 'wiremesh:dev', '.'], 900_000);
    if (!img.ok) throw new Error(`docker build: ${img.out.slice(-2000)}`);
    const up = compose(['up', '-d'], 300_000);
    if (!up.ok) throw new Error(`compose up: ${up.out.slice(-2000)}`);
    // the one-shot setup job, then every node with its pods
    await waitFor(() => /mesh set up/.test(compose(['logs', 'setup']).out), 120_000, 'the setup job');
    for (const n of ['c1-n1', 'c1-n2', 'c2-n1', 'c2-n2']) {
      await waitFor(() => /ready/.test(compose(['logs', n]).out), 240_000, `node ${n}`).catch((err: Error) => {
        // what the node said, and the state of every container: a timeout alone tells nothing
        throw new Error(`${err.message}\n--- logs ${n}:\n${compose(['logs', '--tail', '60', n]).out.slice(-6000)}\n--- ps:\n${compose(['ps']).out}`);
      });
    }
  }, 1_800_000);

  afterAll(() => {
    if (dockerUp) compose(['down', '-v', '--remove-orphans'], 300_000);
    if (dockerd) {
      dockerd.kill('SIGTERM');
      const pidfile = '/run/wiremesh-test-dockerd.pid';
      for (let i = 0; i < 50 && existsSync(pidfile); i++) execFileSync('sleep', ['0.2']);
    }
    lock?.release();
  }, 600_000);

  it('pods reach each other across clusters, through WireGuard between the node containers', async (ctx) => {
    if (!dockerUp) return ctx.skip(); // dockerd could not start here: nothing to run on
    let r: ReturnType<typeof ask> = { ok: false };
    await waitFor(() => (r = ask('c1-n1', 'web1', '100.66.1.10')).ok, 60_000, 'web1 (c1) -> api2 (c2)');
    expect(r.name).toBe('api2');
    expect(ask('c1-n1', 'web1', '100.65.2.10')).toMatchObject({ ok: true, name: 'api1' });
    const st = JSON.parse(inNode('c1-n1', ['node', '-e', "require('http').get({socketPath:'/run/wiremesh/agent.sock',path:'/v1/status'},r=>{let b='';r.on('data',d=>b+=d);r.on('end',()=>console.log(b))})"]).out) as { peers: Array<{ id: string; lastHandshakeAgeS: number | null }> };
    expect(st.peers.map((p) => p.id).sort()).toEqual(['c1/n2', 'c2/n1', 'c2/n2']);
    expect(st.peers.find((p) => p.id === 'c2/n1')!.lastHandshakeAgeS).not.toBeNull();
  });

  it("etcd over mutual TLS with RBAC: a node's own certificate writes its own record, not another node's", (ctx) => {
    if (!dockerUp) return ctx.skip();
    // inside c1-n1, with the credentials of its node.yaml (CN=node-n1, docker/setup.sh)
    const script = `import { connectEtcd } from '/opt/wiremesh/dist/src/controlplane/kvstore.js';
const d = '/pki/c1/nodes/n1/';
const c = connectEtcd({ endpoints: ['https://198.18.100.2:2379'], caFile: d + 'ca.crt', certFile: d + 'node.crt', keyFile: d + 'node.key' });
const v = (p) => p.then(() => 'allowed', (e) => (/permission denied/i.test(e.message) ? 'denied' : e.message));
const own = (await c.get('wiremesh/state/nodes/v1/c1/n1').exec()).kvs[0];
console.log(JSON.stringify({
  own: await v(c.put('wiremesh/state/nodes/v1/c1/n1').value(own.value).lease(own.lease).exec()),
  other: await v(c.put('wiremesh/state/nodes/v1/c1/n2').value('{}').exec()),
  remotes: await v(c.getAll().prefix('wiremesh/mesh/v1/remotes/').keys()),
}));
c.close();`;
    const r = inNode('c1-n1', ['node', '--input-type=module', '-e', script]);
    expect(r.ok, r.out).toBe(true);
    expect(JSON.parse(r.out.trim().split('\n').pop()!)).toEqual({ own: 'allowed', other: 'denied', remotes: 'denied' });
  });

  it('policy: the intruder pod in c2 cannot reach api1 in c1 (only app=web may)', (ctx) => {
    if (!dockerUp) return ctx.skip();
    expect(ask('c2-n2', 'intruder', '100.65.2.10')).toMatchObject({ ok: false, error: 'TIMEOUT' });
    expect(ask('c1-n1', 'web1', '100.65.2.10')).toMatchObject({ ok: true });
  });

  it('the global service spreads web1\'s connections over api1 (c1) and api2 (c2)', async (ctx) => {
    if (!dockerUp) return ctx.skip();
    let vip = '';
    await waitFor(() => {
      const r = inNode('c1-n1', ['wiremesh', 'service', 'list', '--socket', '/run/wiremesh/agent.sock', '-o', 'json']);
      if (!r.ok) return false;
      const svc = (JSON.parse(r.out) as Array<{ services: Array<{ name: string; vip?: string; ports: Array<{ backends: Array<{ state: string }> }> }> }>)[0]!.services.find((s) => s.name === 'api');
      vip = svc?.vip ?? '';
      return !!svc && svc.ports[0]!.backends.filter((b) => b.state === 'selected').length === 2;
    }, 60_000, 'shop/api with both backends');
    const names = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = ask('c1-n1', 'web1', vip, 80);
      expect(r.ok).toBe(true);
      names.add(r.name!);
    }
    expect([...names].sort()).toEqual(['api1', 'api2']);
  });
});
