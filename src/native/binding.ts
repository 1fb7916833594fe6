/**
 * Typed view of the product C++ addon (build/Release/wiremesh.node, native/src/addon/). Only this
 * file loads it; exports only tests, benchmarks and the testbed use are in the test-hooks addon
 * (testhooks.ts). Row layouts: rows.ts.
 */
import { loadAddon } from './load.js';

export { decodeL7Records, L7_RECORD_SIZE, type NativeL7Record } from './rows.js';

export interface NativeEvent {
  kind: number;
  peer: number;
  data?: Buffer;
  host?: string;
  port?: number;
}

// in their own module so that fakes (src/native/fakedevice.ts) use them without loading the addon
export { EVENT_HANDSHAKE_MESSAGE, EVENT_HANDSHAKE_NEEDED, EVENT_KEYPAIR_CONFIRMED, EVENT_TUN_CLOSED, NativeEventKind } from './events.js';

export interface NativePeerStats {
  id: number;
  rxBytes: number;
  txBytes: number;
  /** WireGuard messages (data, keepalives) received and sent. */
  rxPackets: number;
  txPackets: number;
  lastDataSentMs: number;
  lastDataRecvMs: number;
  lastAuthSentMs: number;
  lastAuthRecvMs: number;
  sentUnansweredMs: number;
  recvUnansweredMs: number;
  hasCurrent: boolean;
  currentInitiator: boolean;
  currentAgeMs: number;
  hasNext: boolean;
  /** Liveness probes (mesh mode): monotonic ms of the last answer (0 = none), its RTT in µs as measured (0 = none; the probe monitor reports the windowed minimum). */
  lastProbeReplyMs: number;
  probeRttUs: number;
  probesSent: number;
  probeReplies: number;
  /** Our replies to its probe requests waiting for the TX thread (≤ 8: the per-peer quota, drop_probe_reply_quota past it). */
  probeRepliesQueued: number;
  /** Its probe requests we refused to answer, cumulative (the per-peer quota or the queue's bound: drop_probe_reply_quota, drop_control_overflow). */
  probeRepliesRefused: number;
  host?: string;
  port?: number;
}

export interface NativeDeviceOptions {
  tunName?: string;
  createTun?: boolean;
  vnetHdr?: boolean;
  mtu?: number;
  port?: number;
  fwmark?: number;
}

export interface NativeDevice {
  readonly tunName: string;
  readonly port: number;
  readonly gso: boolean;
  start(onEvents: (events: NativeEvent[]) => void): void;
  close(): void;
  setMtu(mtu: number): void;
  rebind(port: number): void;
  setFwmark(mark: number): boolean;
  setPublicKey(pub: Buffer): void;
  upsertPeer(id: number): void;
  removePeer(id: number): void;
  setEndpoint(id: number, host: string | null, port?: number): void;
  /** Mesh peers: the endpoint roams only to these addresses (any port); null: anywhere (WireGuard). */
  setRoaming(id: number, hosts: string[] | null): void;
  /** Replaces the peer's allowed IPs; a prefix another peer held leaves it. */
  setAllowedIPs(id: number, prefixes: Array<[Buffer, number]>): void;
  /** Adds to the peer's allowed IPs: each taken from whichever peer held it, one the peer holds left in place. */
  addAllowedIPs(id: number, prefixes: Array<[Buffer, number]>): void;
  /**
   * The peer's allowed IPs as rows (rows.ts allowedIPRows: addresses masked to their length), each once, in the
   * order set, less those taken since; none for an unknown peer.
   */
  allowedIPs(id: number): Buffer;
  installKeypair(id: number, localIndex: number, remoteIndex: number, sendKey: Buffer, recvKey: Buffer, initiator: boolean): boolean;
  clearKeypairs(id: number): void;
  sendKeepalive(id: number): void;
  flushStaged(id: number, keepaliveIfEmpty: boolean): void;
  refreshMtu(): number;
  sendHandshake(host: string, port: number, msg: Buffer): boolean;
  /** activeOnly: only peers with traffic, keypairs, staged packets or a pending handshake request. */
  peerStats(activeOnly?: boolean): NativePeerStats[];
  /**
   * Peers holding their traffic state (sessions, staged packets, counters, timers: native/src/wireguard/device.h
   * PeerLive, ~220 B each), made by a peer's first activity and kept until it is removed. O(peers).
   */
  peersWithState(): number;
  counters(): Record<string, number>;
  // ---- mesh mode (src/policy/datapath.ts; row formats in docs/wire-format.md)
  enablePolicy(): void;
  /** Cluster ids 1..maxClusters (setMaxClusters); any other id throws. */
  setPeerIdentity(id: number, tagged: boolean, defaultIdentity: number, clusters: number[]): void;
  /** The mesh's cluster-id layout (src/identity/identity.ts): 255 (default) or 511; before any setPeerIdentity. */
  setMaxClusters(n: 255 | 511): void;
  /** Rows of rows.ts ipcacheRow (28 bytes; family 4|6). */
  ipcacheUpdate(upserts: Buffer, removes: Buffer): void;
  ipcacheLookup(addr: Buffer): { identity: number; endpoint: number } | null;
  /** Maps: rows.ts policyRows (16 bytes each) or null = not enforced. */
  setEndpointPolicy(endpoint: number, identity: number, ingress: Buffer | null, egress: Buffer | null): void;
  /**
   * A delta to one enforced map: every entry equal to a row of `removes` goes, then each row of `upserts` joins its
   * identity's group after the entries it kept (rows.ts policyRows). false: no such endpoint or map (nothing changed).
   */
  policyMapUpdate(endpoint: number, direction: 'ingress' | 'egress', upserts: Buffer, removes: Buffer): boolean;
  /** An endpoint's map as policy rows, grouped by identity (ascending) in lookup order; null = no such map. For tests and tools. */
  policyMapEntries(endpoint: number, direction: 'ingress' | 'egress'): Buffer | null;
  removeEndpoint(endpoint: number): void;
  /** 72-byte flow records (src/policy/flows.ts decodes them) and how many were lost since the last drain. */
  drainFlows(): { records: Buffer; lost: number };
  /** Expires idle policy conntrack and service NAT entries; returns how many went. */
  ctGc(): number;
  /** Policy conntrack bounds: the table, and the entries one local endpoint may hold (the service NAT table gets maxEntries too). */
  /** Policy conntrack bounds; the service NAT table gets maxEntries and natPerEndpoint entries per client (default 65 536, two per flow). */
  setConntrackLimits(maxEntries: number, perEndpoint: number, natPerEndpoint?: number): void;
  /** Host firewall: peers' packets to this node or to no pod pass only from remote-node or as replies of the node's own flows. */
  setHostFirewall(on: boolean): void;
  /** Conntrack entries charged to a local endpoint. */
  ctEndpointEntries(endpoint: number): number;
  /** The engine's verdict on one IP packet, as TX (no identity) or RX from peer 1 with srcIdentity; for tests and tools. */
  policyCheck(packet: Buffer, srcIdentity?: number): 'drop' | 'forward' | 'hairpin' | 'redirect' | 'deliver' | 'malformed';
  /** One liveness probe to each peer (tagged mesh peers answer). */
  probe(peerIds: number[]): void;
  /**
   * The device's probe monitor (mesh mode): its TX thread probes every watched peer every 200 ms
   * and keeps each one's liveness (src/services/health.ts). add: peers watched from now on (again
   * not alive until they answer); remove: peers no longer watched. Unknown peer ids are kept and
   * count as unanswered until the peer exists.
   */
  probeWatch(add: number[], remove: number[]): void;
  /**
   * What changed since the last call: rows of 3 numbers [peer id, alive 0/1, windowed-minimum RTT µs (the least of the last 7.5..10 s; 0 = none)],
   * a peer's row when its liveness flipped or its RTT moved by more than 1/8 of the last reported one.
   * lost: the bounded queue overflowed and rows hold every watched peer's state (a full resync).
   */
  probeChanges(): { rows: Uint32Array; lost: boolean };
  /**
   * Installs or replaces a service port. m: prime Maglev table size. Rows: rows.ts frontendRow and
   * backendRows; weight 0 = keeps its established flows, takes no new ones.
   */
  serviceUpsert(id: number, m: number, frontends: Buffer, backends: Buffer): void;
  serviceRemove(id: number): void;
  /** The backend the data path gives a new flow from source:port to the frontend (a 20-byte row). */
  servicePick(frontend: Buffer, source: Buffer, sourcePort: number): { address: Buffer; port: number } | null;
  /** One packet through the service NAT as the TX thread would (rewritten in place), at monotonic second nowS; for tests. */
  serviceNat(packet: Buffer, dir: 'forward' | 'reverse', nowS: number): 'none' | 'translated' | 'reject' | 'drop';
  /** Where flows that policy redirects (L7 rules) go: the agent's proxy (IPv4). */
  setProxy(address: Buffer, port: number): void;
  /** The original destination and source identity of a flow the proxy accepted from client:port. */
  proxyOriginal(client: Buffer, clientPort: number): { address: Buffer; port: number; identity: number } | null;
}

/** A rule set for the native proxy: 'all' (an L4 allow applies) or HTTP rules with the agent's handle (ref). */
export type NativeL7Rules = 'all' | Array<{ ref: number; method?: string; path?: string; host?: string; headers?: Array<{ name: string; value?: string }> }>;

/** The key the native proxy asks rules for (an endpoint, a port, a source identity) in a policy generation. */
export interface NativeL7Request {
  address: Buffer;
  port: number;
  identity: number;
  generation: number;
}

export interface NativeL7ProxyStats {
  connections: number;
  active: number;
  requests: number;
  denied: number;
  upstreamErrors: number;
  passthrough: number;
  badRequests: number;
  recordsLost: number;
  /** Connections that opened with the HTTP/2 preface on a flow with HTTP rules (GOAWAY, closed). */
  h2Refused: number;
  /** Requests whose Upgrade: h2c was dropped (decided and forwarded as HTTP/1.1). */
  h2cIgnored: number;
  /** Request heads not whole within 10 s of their first byte (answered 408, closed). */
  headTimeouts: number;
  /** Request bodies with no byte for 30 s while the proxy read (closed). */
  bodyTimeouts: number;
  /** Connections closed at accept: over the proxy's total or per-identity cap. */
  limited: number;
  /** Episodes of accept failing for want of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), or refused (EPERM, EACCES), or of the upstream socket() finding no descriptor: accepting paused. */
  fdExhausted: number;
  /** Failed accepts, one per attempt: while paused at most one per closed descriptor or second; also a connection's own errors (ECONNABORTED...), at most 64 a pass. */
  acceptErrors: number;
  /** The connection cap in force (a gauge): 16384, or less when RLIMIT_NOFILE cannot hold two descriptors each. */
  maxConnections: number;
  /** Connections closed at accept because the agent did not answer their original-destination lookup within 250 ms. */
  lookupTimeouts: number;
  /** Connections closed at accept because their client address already had its share of that worker's lookups in flight (an eighth: 128 of 1024). */
  lookupsLimited: number;
  /** Connections closed at accept because their lookup could not be sent (the channel to the agent gone, or full). */
  lookupsUnsent: number;
}

/** The native L7 proxy (native/src/proxy/proxy.h). */
export interface NativeL7Proxy {
  takeRequests(): NativeL7Request[];
  /** rules null: no such local endpoint. Returns warnings (patterns the native matcher could not compile). */
  setRules(req: NativeL7Request, rules: NativeL7Rules | null): string[];
  invalidate(): number;
  drain(max?: number): { rows: Buffer; text: Buffer };
  stats(): NativeL7ProxyStats;
  close(): void;
}

/** The agent's answering thread for the proxy process's lookups. */
export interface NativeProxyLookup {
  /** A new channel: the fd to give the proxy process (close this copy once it is spawned). Throws over 64 channels. */
  pair(): number;
  stats(): { answered: number; notFound: number; malformed: number; channels: number };
  close(): void;
}

/** glibc's malloc arenas (mallinfo2): obtained from the kernel, in use, free inside them; large blocks mmap'd apart. */
export interface MallocInfo {
  arenaBytes: number;
  inUseBytes: number;
  freeBytes: number;
  mmapBytes: number;
}

export interface NativeAddon {
  blake2s(outlen: number, data: Buffer, key?: Buffer): Buffer;
  aead(seal: boolean, xchacha: boolean, key: Buffer, nonce: Buffer, data: Buffer, aad?: Buffer): Buffer | null;
  nowMs(): number;
  x25519(priv: Buffer, pub: Buffer): Buffer | null;
  x25519Public(priv: Buffer): Buffer | null;
  /** HKDF-BLAKE2s as WireGuard uses it: n (1..3) outputs of 32 bytes, concatenated. */
  noiseKdf(n: number, chainKey: Buffer, input: Buffer): Buffer;
  /*
   * Whole Noise_IKpsk2 steps (native/src/crypto/noise.h). Each writes its output, laid out as below, into
   * `out` (a Buffer of exactly that size, which the caller owns and reuses) and returns 0, or 1 for a
   * low-order key, 2 for an AEAD that does not open, 3 for an internal failure (`out` then untouched).
   * Wrong argument lengths throw a TypeError.
   */
  /**
   * out 244: msg 148 | h 32 | ck 32 | ephemeral private 32. The TAI64N timestamp from its seconds and whitened
   * nanoseconds (tai64n.ts); mac1 keyed by mac1Key (32) and mac2 by cookie (16) when given, else zero.
   */
  noiseCreateInitiation(out: Buffer, sender: number, h0: Buffer, remoteStatic: Buffer, localPublic: Buffer, ss: Buffer,
    tsSeconds: number, tsNanos: number, mac1Key: Buffer | null, cookie: Buffer | null): number;
  /** out 96: h 32 | ck 32 | initiator static 32 */
  noiseConsumeInitiationStatic(out: Buffer, localPrivate: Buffer, h0: Buffer, msg: Buffer): number;
  /** out 76: h 32 | ck 32 | timestamp 12 */
  noiseConsumeInitiationTimestamp(out: Buffer, h: Buffer, ck: Buffer, ss: Buffer, msg: Buffer): number;
  /** out 252: msg 92 | h 32 | ck 32 | ephemeral private 32 | transport keys τ1 32 | τ2 32; macs as noiseCreateInitiation */
  noiseCreateResponse(out: Buffer, sender: number, receiver: number, h: Buffer, ck: Buffer, remoteEphemeral: Buffer, remoteStatic: Buffer, psk: Buffer,
    mac1Key: Buffer | null, cookie: Buffer | null): number;
  /** out 128: h 32 | ck 32 | transport keys τ1 32 | τ2 32 */
  noiseConsumeResponse(out: Buffer, h: Buffer, ck: Buffer, ephemeralPrivate: Buffer, localPrivate: Buffer, psk: Buffer, msg: Buffer): number;
  /** glibc's mallinfo2 summed over its arenas, in bytes; null on another C library (native/src/addon/malloc_wrap.cc). */
  mallocInfo(): MallocInfo | null;
  /** glibc's malloc_trim(0): every whole free page inside its arenas back to the kernel; true when some went back. */
  mallocTrim(): boolean;
  Device: new (opts: NativeDeviceOptions) => NativeDevice;
  /**
   * The native L7 proxy, in the proxy process (src/proxy/worker.ts): listens on address:port with `workers`
   * loops; worker i asks the agent for each accepted flow's original destination on lookupFds[i].
   */
  L7Proxy: new (opts: { address: Buffer; port: number; workers: number; lookupFds: number[] }, onRuleRequests: () => void) => NativeL7Proxy;
  /** The agent's side of those lookups (native/src/proxy/lookup.h), answered from the device's load balancer. */
  ProxyLookup: new (device: NativeDevice) => NativeProxyLookup;
  /** prctl(PR_SET_PDEATHSIG): this process gets `signal` when its parent dies. */
  setParentDeathSignal(signal: number): boolean;
  /** Why the proxy's RE2 refuses an L7 pattern, or null (the check `wiremesh apply` makes). */
  validateRegex(pattern: string): string | null;
}

export const native = loadAddon('wiremesh') as NativeAddon;
