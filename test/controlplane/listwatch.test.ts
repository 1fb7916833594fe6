// ListWatcher against a real etcd on loopback. A pausable TCP proxy between
// client and server makes a real outage, during which keys are deleted and the
// history compacted: the watcher must relist and report every deletion.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectEtcd, decoded, EtcdStore, ListWatcher } from '../../src/controlplane/kvstore.js';
import { nodeCodec, RecordError, Rejections, type Codec, type PinnedCluster } from '../../src/controlplane/records/index.js';
import { etcdMirrorTarget } from '../../src/controlplane/mirrorwriter.js';
import { etcdCollectorStore } from '../../src/identity/allocator.js';
import { startEtcd, type EtcdProcess } from '../../src/testbed/etcd.js';
import { hasCommand, waitFor } from '../../src/testbed/netns.js';
import { cacheKey, stateKey } from '../../src/controlplane/keys.js';
import { DEFAULT_BUDGET, RemoteReplication } from '../../src/controlplane/replication.js';
import { Trust } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import { agentOn, ep, epKey, node, nodeKey } from '../helpers/admitting-agent.js';

const enabled = hasCommand('etcd');

class PausableProxy {
  server: Server;
  sockets = new Set<Socket>();
  paused = false;
  constructor(target: number) {
    this.server = createServer((client) => {
      if (this.paused) return client.destroy();
      const up = connect(target, '127.0.0.1');
      client.pipe(up).pipe(client);
      for (const s of [client, up]) {
        this.sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => this.sockets.delete(s));
      }
    });
  }
  listen(port: number): Promise<void> {
    return new Promise((r) => this.server.listen(port, '127.0.0.1', () => r()));
  }
  cut(): void {
    this.paused = true;
    for (const s of this.sockets) s.destroy();
  }
  resume(): void {
    this.paused = false;
  }
}

describe.skipIf(!enabled)('ListWatcher on a real etcd', () => {
  let etcd: EtcdProcess;
  let dir: string;
  const port = 23000 + (process.pid % 1000);
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'wm-etcd-'));
    etcd = await startEtcd({ name: 'lw', dataDir: join(dir, 'data'), host: '127.0.0.1', clientPort: port, peerPort: port + 1000, progressNotifyMs: 500 });
  });
  /**
   * A client straight to the test's etcd, a PausableProxy to it on port + `offset` (one per test), and a client
   * through the proxy; close() closes all three.
   */
  async function behindProxy(offset: number) {
    const direct = connectEtcd({ endpoints: [etcd.clientUrl] });
    const proxy = new PausableProxy(port);
    await proxy.listen(port + offset);
    const viaProxy = connectEtcd({ endpoints: [`http://127.0.0.1:${port + offset}`] });
    const close = () => {
      viaProxy.close();
      direct.close();
      proxy.server.close();
    };
    return { direct, proxy, viaProxy, close };
  }
  /** Compacts etcd's history up to `rev` (etcd3 has no public call for it). */
  const compact = (c: ReturnType<typeof connectEtcd>, rev: string) =>
    (c as unknown as { kv: { compact(r: { revision: string; physical: boolean }): Promise<unknown> } }).kv.compact({ revision: rev, physical: true });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists a prefix larger than one page (and grpc\'s message limit) as one consistent snapshot', async () => {
    const c = connectEtcd({ endpoints: [etcd.clientUrl] });
    const value = 'x'.repeat(400);
    for (let i = 0; i < 12_000; i += 128)
      await c.if('wiremesh/big/0', 'Version', '>', -1).then(...Array.from({ length: 128 }, (_, j) => c.put(`wiremesh/big/${String(i + j).padStart(6, '0')}`).value(value))).commit();
    const { kvs } = await new EtcdStore(c).list('wiremesh/big/');
    expect(kvs.length).toBe(12_032);
    expect(new Set(kvs.map((k) => k.key)).size).toBe(12_032);
    expect(kvs.every((k) => k.key.startsWith('wiremesh/big/'))).toBe(true);
    c.close();
  });

  it('lists, follows puts and deletes, and loses no deletion across a compacted outage', async () => {
    const { direct, proxy, viaProxy, close } = await behindProxy(2000);
    for (const k of ['a', 'b', 'c']) await direct.put(`wiremesh/t/${k}`).value(k);
    const state = new Map<string, string>();
    let syncs = 0;
    const lw = new ListWatcher(new EtcdStore(viaProxy), 'wiremesh/t/', {
      upsert: (k, v) => state.set(k, v),
      remove: (k) => state.delete(k),
      synced: () => syncs++,
    });
    void lw.start();
    await waitFor(() => syncs === 1 && state.size === 3, 5000, 'initial list');

    await direct.put('wiremesh/t/d').value('d');
    await direct.delete().key('wiremesh/t/a');
    await waitFor(() => state.has('wiremesh/t/d') && !state.has('wiremesh/t/a'), 5000, 'watch events');

    // outage: cut the connection, delete and compact meanwhile
    proxy.cut();
    await direct.delete().key('wiremesh/t/b');
    await direct.put('wiremesh/t/e').value('e');
    const rev = (await direct.get('wiremesh/t/e').exec()).header.revision;
    await direct.put('wiremesh/t/zz').value('x');
    await direct.delete().key('wiremesh/t/zz');
    await compact(direct, rev);
    // while cut off, the cached state stays
    expect(state.has('wiremesh/t/b')).toBe(true);
    proxy.resume();
    await waitFor(() => !state.has('wiremesh/t/b') && state.has('wiremesh/t/e'), 15_000, 'relist after compaction');
    expect([...state.keys()].sort()).toEqual(['wiremesh/t/c', 'wiremesh/t/d', 'wiremesh/t/e']);
    await lw.stop();
    close();
  });
  it('a cut stream resumes after the last event without a relist; a big value arrives whole', async () => {
    const { direct, proxy, viaProxy, close } = await behindProxy(2001);
    const state = new Map<string, string>();
    const lw = new ListWatcher(new EtcdStore(viaProxy), 'wiremesh/r/', { upsert: (k, v) => state.set(k, v), remove: (k) => state.delete(k) });
    void lw.start();
    await lw.firstSync();
    await direct.put('wiremesh/r/a').value('1');
    await waitFor(() => state.get('wiremesh/r/a') === '1', 5000, 'first event');
    proxy.cut();
    await direct.put('wiremesh/r/b').value('2');
    await direct.delete().key('wiremesh/r/a');
    const big = 'v'.repeat(1 << 20); // 1 MiB: under etcd's 1.5 MiB request limit, many HTTP/2 frames in one message
    await direct.put('wiremesh/r/big').value(big);
    proxy.resume();
    await waitFor(() => state.has('wiremesh/r/b') && !state.has('wiremesh/r/a') && state.get('wiremesh/r/big')?.length === big.length, 15_000, 'resumed');
    expect(state.get('wiremesh/r/big')).toBe(big);
    expect(lw.relists).toBe(0);
    await lw.stop();
    close();
  });

  it('a quiet prefix resumes after a reconnect without a relist once etcd compacted (progress notifications)', async () => {
    const { direct, proxy, viaProxy, close } = await behindProxy(2002);
    await direct.put('wiremesh/q/a').value('1');
    const state = new Map<string, string>();
    const lw = new ListWatcher(new EtcdStore(viaProxy), 'wiremesh/q/', { upsert: (k, v) => state.set(k, v), remove: (k) => state.delete(k) });
    void lw.start();
    await lw.firstSync();
    for (let i = 0; i < 50; i++) await direct.put('wiremesh/elsewhere/k').value(String(i));
    await new Promise((r) => setTimeout(r, 3000)); // progress notifications every 500 ms here: six of them, so a loaded etcd's late one still lands before the compaction
    const rev = (await direct.get('wiremesh/elsewhere/k').exec()).header.revision;
    await compact(direct, rev);
    proxy.cut();
    await new Promise((r) => setTimeout(r, 200));
    proxy.resume();
    await direct.put('wiremesh/q/z').value('after');
    await waitFor(() => state.get('wiremesh/q/z') === 'after', 15_000, 'event after the reconnect');
    expect(lw.relists).toBe(0);
    await lw.stop();
    close();
  });

  it('a watch response larger than grpc\'s receive limit breaks the watch (the caller relists) instead of reconnecting forever', async () => {
    const c = connectEtcd({ endpoints: [etcd.clientUrl] });
    await c.put('wiremesh/h/start').value('0');
    const from = Number((await c.get('wiremesh/h/start').exec()).header.revision) + 1;
    const big = 'v'.repeat(1 << 20);
    for (let i = 0; i < 70; i++) await c.put(`wiremesh/h/k${i % 10}`).value(big); // 70 MiB of history > 64 MiB
    let broken = '';
    let ups = 0;
    const w = await new EtcdStore(c).watch('wiremesh/h/', String(from), { put: () => undefined, delete: () => undefined, broken: (e) => void (broken = e.message), connected: (u) => void (ups += u ? 1 : 0) });
    await waitFor(() => broken !== '', 15_000, 'watch broken');
    expect(broken).toMatch(/larger than max|RESOURCE_EXHAUSTED/i);
    expect(ups).toBe(1);
    await w.cancel();
    await c.delete().prefix('wiremesh/h/');
    c.close();
  });

  it('a value that is not valid UTF-8 is rejected alone: the key keeps its last good value, later events arrive', async () => {
    const c = connectEtcd({ endpoints: [etcd.clientUrl] });
    const state = new Map<string, string>();
    const lw = new ListWatcher(new EtcdStore(c), 'wiremesh/u/', { upsert: (k, v) => state.set(k, v), remove: (k) => state.delete(k) });
    void lw.start();
    await lw.firstSync();
    await c.put('wiremesh/u/k').value('{"good":1}');
    await c.put('wiremesh/u/k').value(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]));
    await c.put('wiremesh/u/next').value('ok');
    await waitFor(() => state.has('wiremesh/u/next'), 5000, 'next event');
    expect(state.get('wiremesh/u/k')).toBe('{"good":1}');
    expect(lw.rejectedEvents).toBe(1);
    await lw.stop();
    c.close();
  });
  it('the list refuses what the watch refuses (not valid UTF-8): no merged binary keys, no stale key after its delete', async () => {
    const c = connectEtcd({ endpoints: [etcd.clientUrl] });
    const bin = (b: number) => Buffer.concat([Buffer.from('wiremesh/b/k'), Buffer.from([b])]);
    await c.put(bin(0xff)).value('{"v":1}');
    await c.put(bin(0xfe)).value('{"v":2}'); // both would read as "wiremesh/b/k\ufffd"
    await c.put('wiremesh/b/v').value(Buffer.from([0x7b, 0xff, 0x7d]));
    await c.put('wiremesh/b/ok').value('{}');
    const state = new Map<string, string>();
    const lw = new ListWatcher(new EtcdStore(c), 'wiremesh/b/', { upsert: (k, v) => state.set(k, v), remove: (k) => state.delete(k) });
    void lw.start();
    await lw.firstSync();
    expect([...state]).toEqual([['wiremesh/b/ok', '{}']]);
    expect(lw.rejectedEvents).toBe(3);
    await c.delete().key(bin(0xff)).exec();
    await c.put('wiremesh/b/z').value('ok');
    await waitFor(() => state.has('wiremesh/b/z'), 5000, 'next event');
    expect([...state.keys()].sort()).toEqual(['wiremesh/b/ok', 'wiremesh/b/z']);
    await lw.stop();
    c.close();
  });

  it("regression: a binary key's delete is no refusal and is forgotten (review of s8adm: put and delete cycles grew the refused keys)", async () => {
    const c = connectEtcd({ endpoints: [etcd.clientUrl] });
    const bin = (i: number) => Buffer.concat([Buffer.from('wiremesh/bd/'), Buffer.from([0xff, i >> 8, i & 0xff]), Buffer.alloc(4096, 0x61)]);
    const rejections = new Rejections(silentLogger);
    const lw = new ListWatcher(new EtcdStore(c), 'wiremesh/bd/', decoded(nodeCodec, { upsert: () => undefined, remove: () => undefined }, rejections));
    void lw.start();
    await lw.firstSync();
    for (let i = 0; i < 50; i++) {
      await c.put(bin(i)).value('{}');
      await c.delete().key(bin(i)).exec();
    }
    await c.put('wiremesh/bd/last').value('{}'); // after every binary event: its refusal marks the watch caught up
    await waitFor(() => rejections.total === 51, 5000, 'the 50 binary puts and the last record counted');
    expect(rejections.total).toBe(51); // before: 101 (each delete counted as a refusal too)
    expect((lw as unknown as { refusedKeys: Map<unknown, unknown> }).refusedKeys.size).toBe(0); // before: 50, for good
    await lw.stop();
    c.close();
  });

  /** A decoding sink whose codec refuses any value not starting with "good" (a decoder's refusal). */
  function refusingSink(state: Map<string, string>, rejections: Rejections) {
    const codec: Codec<string> = {
      type: 'heartbeat',
      maxBytes: 1024,
      decode: (key, value) => {
        if (!value.startsWith('good')) throw new RecordError('heartbeat', key, 'schema', 'not good');
        return value;
      },
      encode: (v) => v,
    };
    return decoded(codec, { upsert: (k, v) => void state.set(k, v), remove: (k) => void state.delete(k) }, rejections);
  }

  it('a key deleted and created again with a refused value during a gap that forces a relist loses its old value (create_revision)', async () => {
    const { direct, proxy, viaProxy, close } = await behindProxy(2003);
    for (const k of ['reborn', 'binary', 'same', 'samebinary']) await direct.put(`wiremesh/g/${k}`).value(`good-${k}`);
    const state = new Map<string, string>();
    const rejections = new Rejections();
    const lw = new ListWatcher(new EtcdStore(viaProxy), 'wiremesh/g/', refusingSink(state, rejections));
    void lw.start();
    await lw.firstSync();
    await direct.put('wiremesh/g/aa').value('good-aa');
    await waitFor(() => state.size === 5, 5000, 'the watch is up');
    proxy.cut();
    // deleted and re-created with a value the decoder refuses / the store refuses (not UTF-8)
    await direct.delete().key('wiremesh/g/reborn');
    await direct.put('wiremesh/g/reborn').value('bad');
    await direct.delete().key('wiremesh/g/binary');
    await direct.put('wiremesh/g/binary').value(Buffer.from([0x67, 0xff]));
    // the same incarnation updated with refused values: the last good value stays in force
    await direct.put('wiremesh/g/same').value('bad');
    await direct.put('wiremesh/g/samebinary').value(Buffer.from([0x67, 0xff]));
    await direct.put('wiremesh/g/zz').value('good-after');
    const rev = (await direct.get('wiremesh/g/zz').exec()).header.revision;
    await compact(direct, rev);
    proxy.resume();
    await waitFor(() => state.has('wiremesh/g/zz'), 15_000, 'relist after compaction');
    expect(lw.relists).toBe(1);
    expect(Object.fromEntries(state)).toEqual({ 'wiremesh/g/aa': 'good-aa', 'wiremesh/g/same': 'good-same', 'wiremesh/g/samebinary': 'good-samebinary', 'wiremesh/g/zz': 'good-after' });
    expect(rejections.total).toBe(4); // the decoder's two and the store's two (counted with them: ListWatchSink.refused)
    expect(lw.rejectedEvents).toBe(2);
    expect(lw.keys()).not.toContain('wiremesh/g/binary');
    await lw.stop();
    close();
  });

  it('on the watch, a delete then a put of a refused value removes the key (the delete is not undone by the refusal)', async () => {
    const c = connectEtcd({ endpoints: [etcd.clientUrl] });
    for (const k of ['reborn', 'binary']) await c.put(`wiremesh/wd/${k}`).value(`good-${k}`);
    const state = new Map<string, string>();
    const rejections = new Rejections();
    const lw = new ListWatcher(new EtcdStore(c), 'wiremesh/wd/', refusingSink(state, rejections));
    void lw.start();
    await lw.firstSync();
    await c.delete().key('wiremesh/wd/reborn');
    await c.put('wiremesh/wd/reborn').value('bad');
    await c.delete().key('wiremesh/wd/binary');
    await c.put('wiremesh/wd/binary').value(Buffer.from([0x67, 0xff]));
    await c.put('wiremesh/wd/zz').value('good-after');
    await waitFor(() => state.has('wiremesh/wd/zz'), 5000, 'watched');
    expect([...state.keys()]).toEqual(['wiremesh/wd/zz']);
    expect([rejections.total, lw.rejectedEvents]).toEqual([2, 1]); // the decoder's and the store's; the store's also in rejectedEvents
    expect(lw.relists).toBe(0);
    await lw.stop();
    c.close();
  });

  it("the identity collector's list refuses a value that is not valid UTF-8 (reported, not read as U+FFFD text)", async () => {
    const c = connectEtcd({ endpoints: [etcd.clientUrl] });
    await c.put('wiremesh/ic/1').value('{}');
    await c.put('wiremesh/ic/2').value(Buffer.from([0x7b, 0xff, 0x7d]));
    const refused: string[] = [];
    const kvs = await etcdCollectorStore(c).list('wiremesh/ic/', (key, reason) => void refused.push(`${key}: ${reason}`));
    expect(kvs.map((kv) => kv.key)).toEqual(['wiremesh/ic/1']);
    expect(refused).toEqual(['wiremesh/ic/2: value is not valid UTF-8']);
    c.close();
  });

  it("the mirror target's raw Txn applies puts and deletes (distinct keys, as etcd requires) in one revision, seen by a watch", async () => {
    const c = connectEtcd({ endpoints: [etcd.clientUrl] });
    await c.put('wiremesh/m/gone').value('x');
    const state = new Map<string, string>();
    const lw = new ListWatcher(new EtcdStore(c), 'wiremesh/m/', { upsert: (k, v) => state.set(k, v), remove: (k) => state.delete(k) });
    void lw.start();
    await lw.firstSync();
    const before = Number((await c.get('wiremesh/m/gone').exec()).header.revision);
    await etcdMirrorTarget(c).write([['wiremesh/m/a', '2'], ['wiremesh/m/gone', null], ['wiremesh/m/b', 'ü']]);
    const after = await c.getAll().prefix('wiremesh/m/').exec();
    expect(after.kvs.map((kv) => [kv.key.toString(), kv.value.toString(), Number(kv.mod_revision)])).toEqual([
      ['wiremesh/m/a', '2', before + 1],
      ['wiremesh/m/b', 'ü', before + 1],
    ]);
    await waitFor(() => state.get('wiremesh/m/a') === '2' && state.get('wiremesh/m/b') === 'ü' && !state.has('wiremesh/m/gone'), 5000, 'watched');
    await lw.stop();
    c.close();
  });

  it('regression: kvstoremesh copies a key deleted and created again in a gap as a new incarnation (the cache key\'s create revision changes)', async () => {
    const { direct, proxy, viaProxy, close } = await behindProxy(2004);
    const node = (bootId: string) =>
      JSON.stringify({ cluster: 'c2', clusterId: 2, name: 'n1', addresses: ['198.18.2.10'], port: 51820, publicKey: Buffer.alloc(32, 7).toString('base64'), podCIDRs: ['100.66.1.0/24'], bootId });
    const [src, dst] = [stateKey('nodes', 'c2', 'n1'), cacheKey('nodes', 'c2', 'n1')];
    await direct.put(src).value(node('1'));
    const pinned: PinnedCluster = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    expect(trust.pin(pinned)).toBeUndefined();
    const r = new RemoteReplication({ name: 'c2', endpoints: [] }, pinned, trust, etcdMirrorTarget(direct), silentLogger, new Rejections(), DEFAULT_BUDGET, () => ({ store: new EtcdStore(viaProxy), close: () => undefined }));
    await r.start();
    const cached = async () => (await direct.get(dst).exec()).kvs[0];
    await waitFor(async () => (await cached())?.value.toString() === node('1'), 5000, 'first copy');
    const before = (await cached())!.create_revision;
    proxy.cut();
    await direct.delete().key(src);
    await direct.put(src).value(node('2'));
    const rev = (await direct.get(src).exec()).header.revision;
    await compact(direct, rev);
    proxy.resume(); // the watch resumes before the compacted revision (or its creation failed in the cut): a relist
    await waitFor(async () => (await cached())?.value.toString() === node('2'), 15_000, 'the new incarnation copied');
    expect(Number((await cached())!.create_revision)).toBeGreaterThan(Number(before));
    await r.stop(false, 1000);
    close();
  });

  it('regression: the agent withdraws a node deleted and re-created in a gap with a conflicting value; admits it once the conflict goes', async () => {
    const { direct, proxy, viaProxy, close } = await behindProxy(2005);
    await direct.put(nodeKey('n1')).value(JSON.stringify(node('n1', ['100.66.1.0/24'], '198.18.2.1', 'A')));
    await direct.put(nodeKey('n2')).value(JSON.stringify(node('n2', ['100.66.2.0/24'], '198.18.2.2', 'B')));
    await direct.put(epKey('n1', '100.66.1.10')).value(JSON.stringify(ep('n1', '100.66.1.10')));
    const { seen, rejections, watchers } = agentOn(new EtcdStore(viaProxy));
    for (const w of watchers) void w.start();
    await Promise.all(watchers.map((w) => w.firstSync()));
    expect(seen.node.size + seen.endpoint.size).toBe(3);
    await direct.put(nodeKey('n3')).value(JSON.stringify(node('n3', ['100.66.3.0/24'], '198.18.2.3', 'C')));
    await waitFor(() => seen.node.size === 3, 5000, 'the watch is up');
    proxy.cut();
    await direct.delete().key(nodeKey('n1'));
    await direct.put(nodeKey('n1')).value(JSON.stringify(node('n1', ['100.66.1.0/24', '100.66.2.0/25'], '198.18.2.1', 'A')));
    await compact(direct, (await direct.get(nodeKey('n1')).exec()).header.revision);
    proxy.resume();
    await waitFor(() => rejections.total === 1, 15_000, 'relist after compaction');
    expect(watchers[0]!.relists).toBe(1);
    expect([...seen.node.keys(), ...seen.endpoint.keys()].sort()).toEqual([nodeKey('n2'), nodeKey('n3')]); // before: n1 (deleted) and its endpoint stayed
    await direct.delete().key(nodeKey('n2'));
    await waitFor(() => seen.node.has(nodeKey('n1')) && seen.endpoint.size === 1, 5000, 'n1 admitted once n2 is gone');
    await Promise.all(watchers.map((w) => w.stop()));
    close();
  });

  it('regression: a key re-created on the remote while its replication was down reaches the cache as a new incarnation; an unchanged one keeps its own', async () => {
    const direct = connectEtcd({ endpoints: [etcd.clientUrl] });
    const rec = (n: string, cidrs: string[], addr: string, pk: string) => JSON.stringify(node(n, cidrs, addr, pk));
    await direct.put(stateKey('nodes', 'c2', 'n1')).value(rec('n1', ['100.66.1.0/24'], '198.18.2.1', 'A'));
    await direct.put(stateKey('nodes', 'c2', 'n2')).value(rec('n2', ['100.66.2.0/24'], '198.18.2.2', 'B'));
    const pinned: PinnedCluster = { name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['198.18.2.0/24'], relay: false, acceptPolicies: false };
    const trust = new Trust('c1', 1, ['100.65.0.0/16']);
    trust.pin(pinned);
    const replication = () =>
      new RemoteReplication({ name: 'c2', endpoints: [] }, pinned, trust, etcdMirrorTarget(direct), silentLogger, new Rejections(), DEFAULT_BUDGET, () => ({ store: new EtcdStore(direct), close: () => undefined }));
    let r = replication();
    await r.start();
    const { seen, rejections, watchers } = agentOn(new EtcdStore(direct));
    for (const w of watchers) void w.start();
    await waitFor(() => seen.node.size === 2, 5000, 'both admitted');
    const incarnation = async (n: string) => Number((await direct.get(nodeKey(n)).exec()).kvs[0]?.create_revision);
    const before = { n1: await incarnation('n1'), n2: await incarnation('n2') };
    await r.stop(false, 1000);
    await direct.delete().key(stateKey('nodes', 'c2', 'n1'));
    await direct.put(stateKey('nodes', 'c2', 'n1')).value(rec('n1', ['100.66.1.0/24', '100.66.2.0/25'], '198.18.2.1', 'A'));
    r = replication();
    await r.start();
    await waitFor(() => rejections.total === 1, 5000, 'the conflict recorded');
    expect([...seen.node.keys()]).toEqual([nodeKey('n2')]); // before: n1 kept its deleted value ["100.66.1.0/24"]
    expect(await incarnation('n1')).toBeGreaterThan(before.n1);
    expect(await incarnation('n2')).toBe(before.n2);
    // the start's read of the cache: values in pages, one that is not text handed as null (it matches no value)
    await direct.put(nodeKey('bin')).value(Buffer.from([0xff, 0xfe]));
    const read: Array<[string, string | null]> = [];
    await etcdMirrorTarget(direct).entries(nodeKey(''), (page) => void read.push(...page.map((e) => [e.key, e.value] as [string, string | null])));
    expect(read.map(([k, v]) => [k, v === null ? null : 'text'])).toEqual([[nodeKey('bin'), null], [nodeKey('n1'), 'text'], [nodeKey('n2'), 'text']]);
    await direct.delete().key(nodeKey('bin'));
    await r.stop(false, 1000);
    await Promise.all(watchers.map((w) => w.stop()));
    direct.close();
  });
});
