/**
 * An in-memory NativeDevice for unit tests without root, a TUN or the addon (as wireguard-go ships tun/tuntest and
 * conn/bindtest). Everything the control plane hands the device is kept, decoded from its rows, in readable state
 * (peers, allowed IPs, endpoints, keypairs, ipcache, endpoint policies, services); the test plays the data path: it
 * injects events (handshake messages, keypair confirmations), answers probes, queues flow records. Lookups the
 * native engine answers (ipcacheLookup, servicePick, allowedIPs) are simple models of it over that state; the rest
 * of the engine (policyCheck, serviceNat) answers what the test sets.
 *
 * Keypairs take the addon's slots: an initiator's is current at once, a responder's waits as next until a
 * transport message arrives with it. Sends (handshakes, keepalives, flushes) go to an attached FakeWire when there
 * is one (src/native/fakenet.ts links devices) and are recorded either way.
 *
 * Like the addon, calls naming a peer that does not exist are ignored.
 * Consumers take narrow Pick<NativeDevice, ...> views; this implements all of it.
 */
import { formatIP, formatPrefix, maskPrefix, parseIP, parsePrefix, prefixContains } from '../net/ip.js';
import type { NativeDevice, NativeEvent, NativePeerStats } from './binding.js';
import { zeroStats, type FakeDeviceOptions, type FakeIpcacheEntry, type FakeKeypair, type FakePeer, type FakeService } from './fakedevicetypes.js';
import { EVENT_HANDSHAKE_MESSAGE, EVENT_HANDSHAKE_NEEDED, EVENT_KEYPAIR_CONFIRMED, EVENT_TUN_CLOSED } from './events.js';
import { allowedIPRows, familyBytes, IPCACHE_ROW_SIZE } from './rows.js';
import { FakePolicyMaps } from './fakepolicy.js';
import { FakeProbeMonitor } from './fakeprobe.js';

export type { FakeDeviceOptions, FakeIpcacheEntry, FakeKeypair, FakePeer, FakeService } from './fakedevicetypes.js';

/** Where a FakeDevice's datagrams go (FakeNetwork in src/native/fakenet.ts). */
export interface FakeWire {
  /** A handshake message to host:port (sendHandshake). */
  handshake(from: FakeDevice, host: string, port: number, msg: Buffer): void;
  /** A keepalive to the peer (sendKeepalive, flushStaged with nothing staged). */
  keepalive(from: FakeDevice, peer: FakePeer): void;
}

/** The text of a row's address (4 or 16 bytes from `at`). */
function addrText(row: Buffer, at: number, len: number): string {
  return formatIP(row.subarray(at, at + (len === 4 ? 4 : 16)));
}

export class FakeDevice implements NativeDevice {
  readonly tunName: string;
  port: number;
  readonly gso: boolean;
  readonly now: () => number;
  started = false;
  closed = false;
  mtu: number;
  fwmark = 0;
  publicKey: Buffer | null = null;
  readonly peers = new Map<number, FakePeer>();
  /** Handshake messages the device was asked to send, in order. */
  readonly handshakesSent: Array<{ host: string; port: number; msg: Buffer }> = [];
  /** probe() calls, in order. */
  readonly probes: number[][] = [];
  /** Called on each probe(); a test answers with answerProbe (or lets probes go unanswered). */
  onProbe: ((peerIds: number[]) => void) | undefined;
  readonly counterValues: Record<string, number> = {};
  /** Set by FakeNetwork.attach. */
  wire: FakeWire | undefined;
  // ---- mesh mode
  policyEnabled = false;
  hostFirewall: boolean | undefined;
  conntrackLimits: { maxEntries: number; perEndpoint: number; natPerEndpoint?: number } | undefined;
  /** Keyed by "address/length". */
  readonly ipcache = new Map<string, FakeIpcacheEntry>();
  /** The per-endpoint policy maps (fakepolicy.ts); policies: setEndpointPolicy by endpoint id, null maps are "not enforced". */
  readonly policyMaps = new FakePolicyMaps();
  readonly policies = this.policyMaps.byEndpoint;
  readonly services = new Map<number, FakeService>();
  proxy: { address: string; port: number } | undefined;
  /** What policyCheck and serviceNat answer. */
  verdict: ReturnType<NativeDevice['policyCheck']> = 'forward';
  natResult: ReturnType<NativeDevice['serviceNat']> = 'none';
  /** What proxyOriginal answers, by "client:port". */
  readonly proxyFlows = new Map<string, { address: Buffer; port: number; identity: number }>();
  private onEvents: ((events: NativeEvent[]) => void) | undefined;
  private flows: Buffer[] = [];
  private flowsLost = 0;

  constructor(opts: FakeDeviceOptions = {}) {
    this.tunName = opts.tunName ?? 'fake0';
    this.port = opts.port || 51820;
    this.gso = opts.gso ?? false;
    this.mtu = opts.mtu ?? 1420;
    this.now = opts.now ?? (() => performance.now());
  }

  // ---- driving it from a test ----------------------------------------------------

  /** Delivers events to the start() callback, as the event thread does. */
  emit(...events: NativeEvent[]): void {
    // assertion in a test double: a test that drives it wrongly, never a user
    if (!this.onEvents) throw new Error('FakeDevice: start() was not called');
    this.onEvents(events);
  }

  handshakeMessage(data: Buffer, host: string, port: number): void {
    this.emit({ kind: EVENT_HANDSHAKE_MESSAGE, peer: 0, data, host, port });
  }

  handshakeNeeded(peer: number): void {
    this.emit({ kind: EVENT_HANDSHAKE_NEEDED, peer });
  }

  keypairConfirmed(peer: number): void {
    this.emit({ kind: EVENT_KEYPAIR_CONFIRMED, peer });
  }

  tunClosed = (): void => this.emit({ kind: EVENT_TUN_CLOSED, peer: 0 });

  /** The peer answers a probe now (on the device clock), with an RTT of rttUs (as measured: the monitor keeps the windowed minimum). */
  answerProbe(id: number, rttUs: number): void {
    const s = this.peer(id).stats;
    s.lastProbeReplyMs = this.now();
    s.probeRttUs = rttUs;
    s.probeReplies++;
  }

  /** Queues 72-byte flow records for the next drainFlows; lost adds to its loss count. */
  pushFlows(records: Buffer, lost = 0): void {
    this.flows.push(records);
    this.flowsLost += lost;
  }

  /** The peer, which must exist (a test's accessor; the device's own methods ignore unknown peers, as the addon does). */
  peer(id: number): FakePeer {
    const p = this.peers.get(id);
    // assertion in a test double, as above
    if (!p) throw new Error(`FakeDevice: no peer ${id}`);
    return p;
  }

  // ---- NativeDevice ----------------------------------------------------------------

  start(onEvents: (events: NativeEvent[]) => void): void {
    [this.started, this.onEvents] = [true, onEvents];
  }

  close = (): void => void (this.closed = true);

  setMtu(mtu: number): void {
    this.mtu = mtu;
  }

  setRoaming(id: number, hosts: string[] | null): void {
    const p = this.peers.get(id);
    if (p) p.roam = hosts && [...hosts];
  }

  rebind(port: number): void {
    this.port = port;
  }

  setFwmark(mark: number): boolean {
    this.fwmark = mark;
    return true;
  }

  setPublicKey(pub: Buffer): void {
    this.publicKey = Buffer.from(pub);
  }

  upsertPeer(id: number): void {
    if (!this.peers.has(id))
      this.peers.set(id, { id, endpoint: null, allowedIPs: [], keypairs: [], current: null, next: null, previous: null, keepalives: 0, flushes: [], stats: zeroStats() });
  }

  removePeer(id: number): void {
    this.peers.delete(id);
  }

  setEndpoint(id: number, host: string | null, port?: number): void {
    const p = this.peers.get(id);
    if (p) p.endpoint = host === null ? null : { host, port: port ?? 0 };
  }

  /** As the addon's table: addresses masked, each prefix once (where first given), one peer per prefix (others lose it). */
  setAllowedIPs(id: number, prefixes: Array<[Buffer, number]>): void {
    const p = this.peers.get(id);
    if (p) this.give(p, [], prefixes);
  }

  /** As the addon's: a prefix the peer holds stays where it is; any other is taken from its holder, put last. */
  addAllowedIPs(id: number, prefixes: Array<[Buffer, number]>): void {
    const p = this.peers.get(id);
    if (p) this.give(p, p.allowedIPs, prefixes);
  }

  private give(p: FakePeer, kept: string[], prefixes: Array<[Buffer, number]>): void {
    p.allowedIPs = [...new Set([...kept, ...prefixes.map(([addr, cidr]) => formatPrefix({ addr: maskPrefix(addr, cidr), cidr }))])];
    for (const other of this.peers.values()) if (other !== p) other.allowedIPs = other.allowedIPs.filter((x) => !p.allowedIPs.includes(x));
  }

  allowedIPs(id: number): Buffer {
    return allowedIPRows((this.peers.get(id)?.allowedIPs ?? []).map((t) => parsePrefix(t)));
  }

  installKeypair(id: number, localIndex: number, remoteIndex: number, sendKey: Buffer, recvKey: Buffer, initiator: boolean): boolean {
    const p = this.peers.get(id);
    if (!p) return false;
    const kp = { localIndex, remoteIndex, sendKey: Buffer.from(sendKey), recvKey: Buffer.from(recvKey), initiator };
    p.keypairs.push(kp);
    // the addon's rotation (native/src/wireguard/device.cc install_keypair)
    if (initiator) {
      p.previous = p.next ?? p.current;
      p.next = null;
      p.current = kp;
    } else {
      p.next = kp;
      p.previous = null;
    }
    this.slotsChanged(p);
    return true;
  }

  /** A transport message authenticated with kp: a responder's next keypair is confirmed (current from now on). */
  confirm(p: FakePeer, kp: FakeKeypair): boolean {
    if (p.next !== kp) return false;
    p.previous = p.current;
    p.current = kp;
    p.next = null;
    this.slotsChanged(p);
    return true;
  }

  private slotsChanged(p: FakePeer): void {
    p.stats.hasCurrent = p.current !== null;
    p.stats.currentInitiator = p.current?.initiator ?? false;
    p.stats.hasNext = p.next !== null;
  }

  clearKeypairs(id: number): void {
    const p = this.peers.get(id);
    if (!p) return;
    p.keypairs = [];
    p.current = p.next = p.previous = null;
    this.slotsChanged(p);
  }

  sendKeepalive(id: number): void {
    const p = this.peers.get(id);
    if (!p) return;
    p.keepalives++;
    this.wire?.keepalive(this, p);
  }

  /** Nothing is ever staged here: with keepaliveIfEmpty a keepalive goes out, as the addon's would. */
  flushStaged(id: number, keepaliveIfEmpty: boolean): void {
    const p = this.peers.get(id);
    if (!p) return;
    p.flushes.push(keepaliveIfEmpty);
    if (keepaliveIfEmpty) this.wire?.keepalive(this, p);
  }

  refreshMtu(): number {
    return this.mtu;
  }

  sendHandshake(host: string, port: number, msg: Buffer): boolean {
    this.handshakesSent.push({ host, port, msg: Buffer.from(msg) });
    this.wire?.handshake(this, host, port, Buffer.from(msg));
    return true;
  }

  /** The addon's active_only test (device.cc is_active) on what a fake peer shows: a keypair, or anything sent or received. */
  static active(p: FakePeer): boolean {
    const s = p.stats;
    return p.current !== null || p.next !== null || p.previous !== null || s.hasCurrent || s.hasNext || s.lastAuthSentMs > 0 || s.lastAuthRecvMs > 0 || s.rxPackets + s.txPackets > 0;
  }

  peerStats(activeOnly = false): NativePeerStats[] {
    const out: NativePeerStats[] = [];
    for (const p of this.peers.values()) {
      if (activeOnly && !FakeDevice.active(p)) continue;
      out.push({ id: p.id, ...p.stats, ...(p.endpoint ? { host: p.endpoint.host, port: p.endpoint.port } : {}) });
    }
    return out;
  }

  /** The fake holds no blocks: the peers active now (the addon's figure also counts those active before). */
  peersWithState = (): number => [...this.peers.values()].filter((p) => FakeDevice.active(p)).length;

  counters(): Record<string, number> {
    return { ...this.counterValues };
  }

  enablePolicy(): void {
    this.policyEnabled = true;
  }

  /** setMaxClusters, as the addon keeps it: cluster ids setPeerIdentity takes. */
  maxClusters: 255 | 511 = 255;
  setMaxClusters(n: 255 | 511): void {
    if (n !== 255 && n !== 511) throw new TypeError('setMaxClusters(255 | 511)');
    this.maxClusters = n;
  }

  setPeerIdentity(id: number, tagged: boolean, defaultIdentity: number, clusters: number[]): void {
    if (!clusters.every((c) => Number.isInteger(c) && c >= 1 && c <= this.maxClusters)) throw new TypeError('setPeerIdentity: cluster ids 1..maxClusters');
    const p = this.peers.get(id);
    if (p) p.identity = { tagged, defaultIdentity, clusters: [...clusters] };
  }

  ipcacheUpdate(upserts: Buffer, removes: Buffer): void {
    // Checked as the addon checks them (device_policy_wrap.cc): a bad row throws, so an encoder bug fails here too.
    const prefix = (b: Buffer, o: number) => {
      const len = familyBytes(b[o]);
      if (b[o + 1]! > len * 8) throw new TypeError('ipcache row: bad family (4 or 6) or prefix length');
      return `${addrText(b, o + 12, len)}/${b[o + 1]}`;
    };
    for (const b of [upserts, removes]) if (b.length % IPCACHE_ROW_SIZE) throw new TypeError(`ipcache rows are ${IPCACHE_ROW_SIZE} bytes`);
    for (let o = 0; o < removes.length; o += IPCACHE_ROW_SIZE) this.ipcache.delete(prefix(removes, o));
    for (let o = 0; o < upserts.length; o += IPCACHE_ROW_SIZE) this.ipcache.set(prefix(upserts, o), { identity: upserts.readUInt32LE(o + 4), endpoint: upserts.readUInt32LE(o + 8) });
  }

  /** Longest-prefix match over the ipcache, as the engine's tables answer. */
  ipcacheLookup(addr: Buffer): { identity: number; endpoint: number } | null {
    let best: { len: number; e: FakeIpcacheEntry } | undefined;
    for (const [text, e] of this.ipcache) {
      const p = parsePrefix(text);
      if ((!best || p.cidr > best.len) && prefixContains(p, addr)) best = { len: p.cidr, e };
    }
    return best ? { ...best.e } : null;
  }

  readonly setEndpointPolicy = (endpoint: number, identity: number, ingress: Buffer | null, egress: Buffer | null): void => this.policyMaps.set(endpoint, identity, ingress, egress);
  readonly policyMapUpdate = (endpoint: number, direction: 'ingress' | 'egress', upserts: Buffer, removes: Buffer): boolean => this.policyMaps.update(endpoint, direction, upserts, removes);
  readonly policyMapEntries = (endpoint: number, direction: 'ingress' | 'egress'): Buffer | null => this.policyMaps.entries(endpoint, direction);
  readonly removeEndpoint = (endpoint: number): void => void this.policies.delete(endpoint);

  drainFlows(): { records: Buffer; lost: number } {
    const out = { records: Buffer.concat(this.flows), lost: this.flowsLost };
    this.flows = [];
    this.flowsLost = 0;
    return out;
  }

  ctGc(): number {
    return 0;
  }

  setConntrackLimits(maxEntries: number, perEndpoint: number, natPerEndpoint?: number): void {
    this.conntrackLimits = { maxEntries, perEndpoint, ...(natPerEndpoint !== undefined ? { natPerEndpoint } : {}) };
  }

  setHostFirewall(on: boolean): void {
    this.hostFirewall = on;
  }

  ctEndpointEntries(_endpoint: number): number {
    return 0;
  }

  policyCheck(_packet: Buffer, _srcIdentity?: number): ReturnType<NativeDevice['policyCheck']> {
    return this.verdict;
  }

  /** The probe monitor (src/native/fakeprobe.ts): one round per probeChanges() unless autoRound is off. */
  readonly probeMonitor = new FakeProbeMonitor({ now: () => this.now(), probe: (ids) => this.probe(ids), reply: (p) => this.peers.get(p)?.stats });

  readonly probeWatch = (add: number[], remove: number[]): void => this.probeMonitor.watch(add, remove);
  readonly probeChanges = (): { rows: Uint32Array; lost: boolean } => this.probeMonitor.drain();

  probe(peerIds: number[]): void {
    this.probes.push([...peerIds]);
    for (const id of peerIds) {
      const p = this.peers.get(id);
      if (p) p.stats.probesSent++;
    }
    this.onProbe?.(peerIds);
  }

  serviceUpsert(id: number, m: number, frontends: Buffer, backends: Buffer): void {
    const fe: string[] = [];
    for (let o = 0; o + 20 <= frontends.length; o += 20) fe.push(`${addrText(frontends, o + 4, familyBytes(frontends[o]))}:${frontends.readUInt16LE(o + 2)}/${frontends[o + 1]}`);
    const be: FakeService['backends'] = [];
    for (let o = 0; o + 24 <= backends.length; o += 24)
      be.push({ address: addrText(backends, o + 8, familyBytes(backends[o])), port: backends.readUInt16LE(o + 2), weight: backends.readUInt32LE(o + 4) });
    this.services.set(id, { m, frontends: fe, backends: be });
  }

  serviceRemove(id: number): void {
    this.services.delete(id);
  }

  /** The first backend with weight of the service that has this frontend (no Maglev: a test of the choice itself wants the addon). */
  servicePick(frontend: Buffer, _source: Buffer, _sourcePort: number): { address: Buffer; port: number } | null {
    const fe = `${addrText(frontend, 4, familyBytes(frontend[0]))}:${frontend.readUInt16LE(2)}/${frontend[1]}`;
    for (const s of this.services.values()) {
      if (!s.frontends.includes(fe)) continue;
      const b = s.backends.find((x) => x.weight > 0);
      return b ? { address: parseIP(b.address)!, port: b.port } : null;
    }
    return null;
  }

  serviceNat(_packet: Buffer, _dir: 'forward' | 'reverse', _nowS: number): ReturnType<NativeDevice['serviceNat']> {
    return this.natResult;
  }

  setProxy(address: Buffer, port: number): void {
    this.proxy = { address: formatIP(address), port };
  }

  proxyOriginal(client: Buffer, clientPort: number): { address: Buffer; port: number; identity: number } | null {
    return this.proxyFlows.get(`${formatIP(client)}:${clientPort}`) ?? null;
  }
}
