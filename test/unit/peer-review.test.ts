// Review of s21peer (the agent's JS per peer, issue 16): adversarial and differential cases against the former
// behaviour (main 730811b). What is compared: the device's peers and UAPI get text (src/wireguard/device.ts,
// peer.ts, peersbyhex.ts, uapi.ts), the reconciler's address claims as the allowed IPs and roaming sets they
// program and the warning they log (src/agent/peers.ts, addressclaims.ts), and RouteTable's batches
// (src/agent/routetable.ts) against the former Map-and-Set bookkeeping, kept in this file as the reference.
// The first describe FAILS on s21peer: the address-conflict warning's `address` field lost its prefix length
// ("198.18.0.5" where main logged "198.18.0.5/32"), while docs/benchmarks.md says "behaviour unchanged".
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { PeerReconciler, type LocalNode } from '../../src/agent/peers.js';
import { RouteTable, type BatchResult } from '../../src/agent/routetable.js';
import { stateKey } from '../../src/controlplane/keys.js';
import type { NodeRecord } from '../../src/controlplane/records/index.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { formatPrefix, parseIP, parsePrefix, prefixContains } from '../../src/net/ip.js';
import { FakeDevice } from '../../src/native/fakedevice.js';
import { PrefixTrie } from '../../src/net/prefixtrie.js';
import { generatePrivateKey, publicFromPrivate } from '../../src/wireguard/crypto.js';
import { WireGuardDevice } from '../../src/wireguard/device.js';
import { formatGet, handleRequest } from '../../src/wireguard/uapi.js';
import { prng } from '../helpers/prng.js';

const me: LocalNode = { cluster: 'c1', node: 'n0', addresses: ['198.18.9.1'], podCIDRs: ['100.64.0.0/24'] };

function capture(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

function mesh(log: Logger = silentLogger) {
  const dev = new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1 });
  dev.setPrivateKey(generatePrivateKey());
  const refs = new Map<string, number>();
  const r = new PeerReconciler({
    me,
    dev,
    routes: {
      claim: (rs) => rs.forEach((c) => refs.set(c, (refs.get(c) ?? 0) + 1)),
      release: (rs) => rs.forEach((c) => (refs.get(c)! > 1 ? refs.set(c, refs.get(c)! - 1) : refs.delete(c))),
      flush: () => {},
      covers: (addr) => [...refs.keys()].some((c) => prefixContains(parsePrefix(c), addr)),
    },
    policy: { setNode: () => {}, peerIdentity: () => {} }, // truthy: held node addresses go into allowed IPs
    podSpace: () => [parsePrefix('100.64.0.0/10')],
    peersChanged: () => {},
    publishRelay: () => {},
    programmed: () => {},
    log,
  });
  r.stop(); // passes run here, synchronously
  const keys = new Map<string, string>();
  const set = (name: string, addresses: string[] | undefined) => {
    const publicKey = (keys.get(name) ?? keys.set(name, publicFromPrivate(generatePrivateKey()).toString('base64')).get(name))!;
    const n = Number(name.slice(1));
    const rec: NodeRecord | undefined = addresses && { cluster: 'c1', clusterId: 1, name, addresses, port: 51820, publicKey, podCIDRs: [`100.64.${n}.0/24`], bootId: '1' };
    r.setNodeRecord(stateKey('nodes', 'c1', name), rec);
    r.reconcile();
  };
  const peerOf = (name: string) => dev.getPeer(Buffer.from(keys.get(name)!, 'base64'));
  const allowed = (name: string) => peerOf(name)?.allowedIPs.map((p) => formatPrefix(p));
  const roam = (name: string) => peerOf(name)?.roamHosts;
  return { dev, r, set, peerOf, allowed, roam };
}

describe('the address-conflict warning names the address as main did (FAILS on s21peer)', () => {
  for (const addr of ['198.18.0.5', 'fd00:18::5']) {
    it(`two nodes claim ${addr}: the warning's address is its host prefix, as main logged it`, () => {
      const { log, lines } = capture();
      const m = mesh(log);
      m.set('n1', [addr]);
      m.set('n2', [addr]);
      const warn = lines.find((l) => l.msg === 'two nodes claim one address: it stays with the first');
      expect(warn).toBeDefined();
      // main (730811b): { address: "198.18.0.5/32", holder: "c1/n1", claimant: "c1/n2" }; s21peer: "198.18.0.5"
      expect(warn!.address).toBe(`${addr}/${addr.includes(':') ? 128 : 32}`);
      m.dev.close();
    });
  }
});

describe('address claims through the reconciler (held on s21peer)', () => {
  it('two peers claim one address, the holder leaves: the other takes it (allowed IPs and roaming)', () => {
    const m = mesh();
    m.set('n1', ['198.18.0.5']);
    m.set('n2', ['198.18.0.5', 'fd00:18::2']);
    expect(m.allowed('n1')).toEqual(['100.64.1.0/24', '198.18.0.5/32']);
    expect(m.allowed('n2')).toEqual(['100.64.2.0/24', 'fd00:18::2/128']);
    expect(m.roam('n2')).toEqual(['fd00:18::2']);
    m.set('n1', undefined);
    expect(m.peerOf('n1')).toBeUndefined();
    expect(m.allowed('n2')).toEqual(['100.64.2.0/24', '198.18.0.5/32', 'fd00:18::2/128']);
    expect(m.roam('n2')).toEqual(['fd00:18::2', '198.18.0.5']);
    m.dev.close();
  });

  it('a peer whose addresses go from one to two to one (a lone claim, an array, a lone claim) keeps what it holds', () => {
    const m = mesh();
    m.set('n1', ['198.18.0.5']);
    m.set('n2', ['198.18.0.6', '198.18.0.5']); // claims .5 after n1: waits
    m.set('n1', ['198.18.0.5', 'fd00:18::1']);
    expect(m.allowed('n1')).toEqual(['100.64.1.0/24', '198.18.0.5/32', 'fd00:18::1/128']);
    m.set('n1', ['fd00:18::1']); // lets .5 go: n2 takes it
    expect(m.allowed('n1')).toEqual(['100.64.1.0/24', 'fd00:18::1/128']);
    expect(m.allowed('n2')).toEqual(['100.64.2.0/24', '198.18.0.6/32', '198.18.0.5/32']); // in its claims' order
    m.set('n1', ['198.18.0.5']); // claims it again: n2 keeps it, n1 waits
    expect(m.allowed('n1')).toEqual(['100.64.1.0/24']);
    expect(m.allowed('n2')).toEqual(['100.64.2.0/24', '198.18.0.6/32', '198.18.0.5/32']);
    m.set('n2', ['198.18.0.6']);
    expect(m.allowed('n1')).toEqual(['100.64.1.0/24', '198.18.0.5/32']);
    expect(m.roam('n1')).toEqual(['198.18.0.5']);
    m.dev.close();
  });

  it('a relist (same content, new strings) and our own address in a record change nothing', () => {
    const m = mesh();
    m.set('n1', ['198.18.0.5', me.addresses[0]!, '100.64.9.9']); // ours and pod space: never claimed
    const before = formatGet(m.dev);
    m.set('n1', JSON.parse(JSON.stringify(['198.18.0.5', me.addresses[0]!, '100.64.9.9'])) as string[]);
    expect(formatGet(m.dev)).toBe(before);
    expect(m.allowed('n1')).toEqual(['100.64.1.0/24', '198.18.0.5/32']);
    m.dev.close();
  });
});

describe('the device by key and UAPI (held on s21peer)', () => {
  const dev = () => new WireGuardDevice({ device: new FakeDevice(), tickMs: 0, now: () => 1, logger: silentLogger });

  it('a key in uppercase hex is refused (as main: keys.ts keyFromHex); the view takes only lowercase hex', () => {
    const d = dev();
    const k = publicFromPrivate(generatePrivateKey());
    const hex = k.toString('hex');
    expect(handleRequest(d, ['set=1', `public_key=${hex.toUpperCase()}`])).toBe('errno=-22\n\n');
    expect(d.peers.size).toBe(0);
    expect(handleRequest(d, ['set=1', `public_key=${hex}`, 'endpoint=[FD00:0::1]:7'])).toBe('errno=0\n\n');
    expect(handleRequest(d, ['set=1', `public_key=${hex}`, 'allowed_ip=100.64.0.5/24'])).toBe('errno=0\n\n');
    expect(d.peers.size).toBe(1);
    expect(formatGet(d)).toContain(`public_key=${hex}\n`);
    expect(formatGet(d)).toContain('endpoint=[fd00::1]:7\n');
    expect(d.peers.get(hex.toUpperCase())).toBeUndefined();
    expect(d.peers.get(` ${hex}`)).toBeUndefined();
    expect(d.peers.get(`${hex}\n`)).toBeUndefined();
    expect(d.peers.get(k.toString('base64'))).toBeUndefined();
    d.close();
  });

  it('removal and re-add move a peer to the end of get; our private key becoming a peer\'s key drops that peer', () => {
    const d = dev();
    const privs = [generatePrivateKey(), generatePrivateKey(), generatePrivateKey()];
    const hexes = privs.map((p) => publicFromPrivate(p).toString('hex'));
    for (const h of hexes) handleRequest(d, ['set=1', `public_key=${h}`]);
    handleRequest(d, ['set=1', `public_key=${hexes[0]}`, 'remove=true', `public_key=${hexes[0]}`]);
    expect([...d.peers.keys()]).toEqual([hexes[1], hexes[2], hexes[0]]);
    handleRequest(d, ['set=1', `private_key=${privs[2]!.toString('hex')}`]);
    expect([...d.peers.keys()]).toEqual([hexes[1], hexes[0]]);
    expect(formatGet(d).match(/public_key=\w+/g)).toEqual([`public_key=${hexes[1]}`, `public_key=${hexes[0]}`]);
    d.close();
  });

  it('the endpoint is copied when set: a caller mutating its object after changes neither the peer nor the native one', () => {
    const native = new FakeDevice();
    const d = new WireGuardDevice({ device: native, tickMs: 0, now: () => 1 });
    const p = d.addPeer(publicFromPrivate(generatePrivateKey()));
    const ep = { host: '198.18.0.1', port: 5 };
    d.setPeerEndpoint(p, ep);
    ep.port = 9; // main kept this object: its peer then said 9 while the native device said 5
    expect(p.endpoint).toEqual({ host: '198.18.0.1', port: 5 });
    expect(native.peer(p.id).endpoint).toEqual({ host: '198.18.0.1', port: 5 });
    d.close();
  });
});

/** RouteTable's former bookkeeping (main 730811b): counts in a Map, installed routes in a Set. */
class FormerBooks {
  readonly installed = new Set<string>();
  readonly refs = new Map<string, number>();
  readonly touched = new Set<string>();
  readonly uncertain = new Set<string>();
  readonly trie = new PrefixTrie<string>();
  claim(routes: readonly string[]): void {
    for (const r of routes) {
      const n = this.refs.get(r) ?? 0;
      if (n === 0) this.trie.insert(parsePrefix(r), r);
      this.refs.set(r, n + 1);
      this.touched.add(r);
    }
  }
  release(routes: readonly string[]): void {
    for (const r of routes) {
      const n = (this.refs.get(r) ?? 1) - 1;
      if (n > 0) this.refs.set(r, n);
      else if (this.refs.delete(r)) this.trie.remove(parsePrefix(r), r);
      this.touched.add(r);
    }
  }
  /** The next batch's lines (flush()), or none. */
  lines(): Array<{ cidr: string; add: boolean }> {
    const ops: Array<{ cidr: string; add: boolean }> = [];
    for (const r of this.touched) {
      const want = this.refs.has(r);
      if (want !== this.installed.has(r) || this.uncertain.has(r)) ops.push({ cidr: r, add: want });
    }
    this.touched.clear();
    return ops;
  }
  settle(ops: Array<{ cidr: string; add: boolean }>, failed: Map<number, string>, whole: boolean): void {
    if (whole) for (const o of ops) this.uncertain.add(o.cidr);
    ops.forEach((o, i) => {
      const err = failed.get(i);
      if (err !== undefined && (whole || !(!o.add && /No such process/.test(err)))) return void this.touched.add(o.cidr);
      this.uncertain.delete(o.cidr);
      if (o.add) this.installed.add(o.cidr);
      else this.installed.delete(o.cidr);
    });
  }
}

describe('RouteTable (one map since s21peer) against the former Map and Set (held on s21peer)', () => {
  const CIDRS = ['100.64.0.0/24', '100.64.1.0/24', '100.64.0.0/16', 'fd00::/64', '100.64.0.1/24', '0.0.0.0/0'];
  const ADDRS = ['100.64.0.5', '100.64.1.5', '100.64.200.1', 'fd00::1', '198.18.0.8'].map((a) => parseIP(a)!);
  const tick = () => new Promise((res) => setImmediate(res));

  for (let seed = 1; seed <= 40; seed++)
    it(`seed ${seed}: the same lines per batch, covers() and pending, with failed lines and killed runs`, async () => {
      const rnd = prng(seed);
      const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
      const calls: Array<{ lines: string[]; res(r: BatchResult): void; rej(e: Error): void }> = [];
      const t = new RouteTable('wm0', (lines) => new Promise((res, rej) => calls.push({ lines, res, rej })), silentLogger, { retryMs: 1e9 });
      const ref = new FormerBooks();
      const refBatches: Array<Array<{ cidr: string; add: boolean }>> = [];
      let refInFlight = false;
      let refAgain = false;
      const refFlush = () => {
        if (refInFlight) return void (refAgain = true);
        const ops = ref.lines();
        if (ops.length) (refBatches.push(ops), (refInFlight = true));
      };
      for (let step = 0; step < 150; step++) {
        const ctx = `seed ${seed} step ${step}`;
        const x = rnd();
        if (x < 0.3) {
          const rs = rnd() < 0.3 ? [pick(CIDRS), pick(CIDRS)] : [pick(CIDRS)];
          t.claim(rs), ref.claim(rs);
        } else if (x < 0.55) {
          const rs = [pick(CIDRS)];
          t.release(rs), ref.release(rs);
        } else if (x < 0.75) {
          t.flush(), refFlush();
        } else if (calls.length) {
          const call = calls.shift()!;
          const ops = refBatches.shift()!;
          expect(call.lines, ctx).toEqual(ops.map((o) => `route ${o.add ? 'replace' : 'del'} ${o.cidr} dev wm0`));
          const failed = new Map<number, string>();
          const whole = rnd() < 0.2;
          if (whole) call.rej(new Error('killed'));
          else {
            ops.forEach((_, i) => rnd() < 0.3 && failed.set(i, rnd() < 0.5 ? 'RTNETLINK answers: No such process' : 'RTNETLINK answers: File exists'));
            call.res({ failed: new Map(failed) });
          }
          ref.settle(ops, whole ? new Map(ops.map((_, i) => [i, 'killed'])) : failed, whole);
          refInFlight = false;
          if (refAgain) (refAgain = false), refFlush();
          await tick();
        }
        expect(ADDRS.map((a) => t.covers(a)), ctx).toEqual(ADDRS.map((a) => ref.trie.covering({ addr: a, cidr: a.length * 8 }) !== undefined));
        expect(t.pending, ctx).toBe(ref.touched.size + (refInFlight ? refBatches[0]!.length : 0));
      }
      expect(calls.length).toBe(refBatches.length);
    });
});
