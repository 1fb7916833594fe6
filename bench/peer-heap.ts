/**
 * The agent's JavaScript heap per WireGuard peer (issue 16): N node records of four remote clusters through the
 * real PeerReconciler, WireGuardDevice and RouteTable, with in-memory fakes of the data path (every native call a
 * no-op), the `ip` runner (every batch succeeds) and the policy side (mesh mode on: node addresses are claimed).
 * The records exist before the first reading (the agent holds them whatever its peers cost); the growth from
 * there to after the pass and its route batch, after full GCs, is divided by N; passMs is the pass's time. The
 * records' strings are flat (as decoded), and a warm-up round of 2,000 peers added and removed runs first.
 *
 * Usage: node --expose-gc dist/bench/peer-heap.js [N = 4000] [DIST...]: each DIST a build's dist directory
 * (default this one's), run in order in child processes, one JSON line each ({ dist, n, bytesPerPeer, passMs }).
 * CP_PEER_HEAP_SNAPSHOT=PREFIX writes heap snapshots PREFIX.0 and PREFIX.1 around the growth (one DIST; read them
 * with bench/heap-diff.ts). CP_PEER_HEAP_POLICY=1 gives the reconciler the build's real PolicyDatapath (over its
 * FakeDevice: node addresses in the ipcache, peers' identities) instead of a no-op one.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';

/** The modules of another build, loaded by path (their types are not this build's). */
type Any = any;

async function measure(dist: string, n: number): Promise<{ bytesPerPeer: number; passMs: number }> {
  const load = (m: string): Promise<Any> => import(resolve(dist, m));
  const { PeerReconciler } = await load('src/agent/peers.js');
  const { WireGuardDevice } = await load('src/wireguard/device.js');
  const { RouteTable } = await load('src/agent/routetable.js');
  const { silentLogger } = await load('src/log.js');
  const { cachePrefix } = await load('src/controlplane/keys.js');
  // CP_PEER_HEAP_POLICY=1: the build's real policy data path (over its FakeDevice) instead of the no-op policy side
  const policy = process.env.CP_PEER_HEAP_POLICY
    ? new (await load('src/policy/datapath.js')).PolicyDatapath(new (await load('src/native/fakedevice.js')).FakeDevice(), 'c1', 'n1', { defaultLocalCluster: true }, silentLogger)
    : undefined;
  const noop = (): void => {};
  const native = Object.fromEntries(
    ['start', 'close', 'rebind', 'setFwmark', 'setPublicKey', 'upsertPeer', 'removePeer', 'setEndpoint', 'setRoaming', 'setAllowedIPs', 'installKeypair', 'clearKeypairs', 'sendKeepalive', 'flushStaged', 'refreshMtu', 'sendHandshake'].map((k) => [k, noop]),
  );
  const dev = new WireGuardDevice({ device: { ...native, tunName: 'wm0', port: 51820, peerStats: () => [] }, tickMs: 0, now: () => 1 });
  dev.setPrivateKey(randomBytes(32));
  const me = { cluster: 'c1', node: 'n1', addresses: ['198.18.0.1'], podCIDRs: ['100.64.0.0/24'] };
  const r = new PeerReconciler({
    me,
    dev,
    routes: new RouteTable('wm0', () => Promise.resolve({ failed: new Map() }), silentLogger),
    policy: policy ?? { setNode: noop, peerIdentity: noop },
    podSpace: () => [],
    peersChanged: noop,
    publishRelay: noop,
    programmed: noop,
    log: silentLogger,
  });
  for (let c = 2; c <= 6; c++) r.setSynced(`c${c}`, true);
  r.reconcile();
  // Keys and records as the agent holds them: flat strings decoded from the wire (a template literal's cons
  // string would be flattened into a new string on its first hashing, after the first reading: ~90 B per peer
  // that is the bench's, not the agent's), the records as the build's node codec decodes them (s40: a HeldNode).
  const { nodeCodec } = await load('src/controlplane/records/index.js');
  const flat = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;
  const make = (c: number, j: number): [string, object] => {
    const k = c * 1000 + j + 1; // distinct per node: its address and pod /24
    const name = `n${j + 1}`;
    const rec = { cluster: `c${c}`, clusterId: c, name, addresses: [`198.18.${k >> 8}.${k & 255}`], port: 51820, publicKey: randomBytes(32).toString('base64'), podCIDRs: [`100.${64 + (k >> 8)}.${k & 255}.0/24`], bootId: '1' };
    const key = flat(`${cachePrefix('nodes', `c${c}`)}${name}`);
    return [key, nodeCodec.decode(key, JSON.stringify(rec)) as object];
  };
  const records: Array<[string, object]> = [];
  for (let i = 0; i < n; i++) records.push(make(2 + (i % 4), Math.floor(i / 4)));
  // A warm-up round (peers of a fifth cluster added and removed) compiles the code the pass runs, so the reading
  // does not count the optimised code and feedback made during it (~60 B per peer, varying between runs).
  const warm = Array.from({ length: Math.min(n, 2000) }, (_, j) => make(6, j));
  for (const [key, rec] of warm) r.setNodeRecord(key, rec);
  r.reconcile();
  for (const [key] of warm) r.setNodeRecord(key, undefined);
  r.reconcile();
  await new Promise((done) => setImmediate(done));
  const gc = globalThis.gc!;
  const settle = (): void => {
    for (let i = 0; i < 4; i++) gc();
  };
  const snap = process.env.CP_PEER_HEAP_SNAPSHOT;
  settle();
  if (snap) (v8.writeHeapSnapshot(`${snap}.0`), settle());
  const before = v8.getHeapStatistics().used_heap_size;
  const t0 = performance.now();
  for (const [key, rec] of records) r.setNodeRecord(key, rec);
  r.reconcile();
  const passMs = performance.now() - t0;
  await new Promise((done) => setImmediate(done)); // the route batch ends
  settle();
  const after = v8.getHeapStatistics().used_heap_size;
  if (snap) v8.writeHeapSnapshot(`${snap}.1`);
  if (r.peers.size !== n || dev.peers.size !== n) throw new Error(`expected ${n} peers, have ${r.peers.size} / ${dev.peers.size}`);
  return { bytesPerPeer: Math.round((after - before) / n), passMs: Math.round(passMs) };
}

const here = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const [nArg, ...dists] = process.argv.slice(2);
const n = Number(nArg ?? 4000);
if (process.env.CP_PEER_HEAP_CHILD) {
  const dist = process.env.CP_PEER_HEAP_CHILD;
  console.log(JSON.stringify({ dist, n, ...(await measure(dist, n)) }));
} else {
  for (const dist of dists.length ? dists : [here]) {
    const out = execFileSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), String(n)], { env: { ...process.env, CP_PEER_HEAP_CHILD: resolve(dist) }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    process.stdout.write(out);
  }
}
