/**
 * Typed view of the test-hooks addon (build/Release/wiremesh_testhooks.node, native/src/testhooks/):
 * the data path's pieces wrapped one by one, the L7 matcher, Maglev tables and the policy
 * microbenchmarks for test/ and bench/, and the testbed's delay line (src/testbed/latency.ts).
 * The product (agent, proxy, CLI outside `testbed`) never imports this module.
 */
import type { NativeL7Rules } from './binding.js';
import { loadAddon } from './load.js';

export type PolicyBenchKind = 'ipcache' | 'ipcache+policy' | 'conntrack' | 'conntrack-mt' | 'engine' | 'maglev-build' | 'maglev-lookup' | 'service-nat';

/** A flow's first packet for ConntrackProbe: addresses of 4 or 16 bytes (alike), protocol, ports, TCP flags. */
export interface ConntrackFlow { src: Buffer; dst: Buffer; proto: number; sport: number; dport: number; tcpFlags?: number }

export interface TestHooksAddon {
  hchacha20(key: Buffer, nonce16: Buffer): Buffer;
  /**
   * Thread CPU seconds per X25519 operation, `iterations` run natively (no JS crossing) with one
   * implementation: 'libsodium' (what the addon uses), 'libsodium-base' (public key of a private
   * key, crypto_scalarmult_base), 'libsodium-comb' (the same by the Ed25519 fixed-base comb and the
   * Edwards -> Montgomery map: the handshake's ephemerals), 'openssl-reuse' (EVP with our key object and derive context kept, the peer's built per
   * call), 'openssl-fresh' (both key objects per call: the addon before libsodium),
   * 'openssl-keygen' (EVP keygen, context kept), 'nettle' (curve25519_mul of Debian's libhogweed6, looked up at
   * run time: null when it is not installed; its bytes are checked against libsodium's first). Throws on an
   * unknown name.
   */
  x25519Cost(impl: string, iterations: number): number | null;
  /** X25519(priv, 9) by the Ed25519 comb path the ephemerals use (32 bytes); null if it failed. */
  x25519PublicComb(priv: Buffer): Buffer | null;
  /**
   * Thread CPU seconds per handshake for each side running only the native Noise steps, no
   * JavaScript (the floor under src/wireguard/noise.ts). Throws if a step fails.
   */
  noiseStepsCost(iterations: number): { initiator: number; responder: number };
  /** CPU seconds of the calling thread alone (process.cpuUsage() also counts V8's and libuv's helpers). */
  threadCpuSeconds(): number;
  /** A GSO super-packet (with its virtio-net header, or null) cut into MTU packets; null when it cannot be. */
  splitPacket(vnetHdr: Buffer | null, packet: Buffer): Buffer[] | null;
  /** TCP segments merged as the RX path merges them before the TUN. */
  coalesce(packets: Buffer[]): Array<{ vnet: Buffer; data: Buffer }>;
  ReplayFilter: new () => { validate(counter: bigint): boolean; reset(): void };
  RateLimiter: new () => { allow(ip: Buffer, nowNs: bigint): boolean; size(): number };
  AllowedIPs: new () => {
    insert(addr: Buffer, cidr: number, peer: number): void;
    removePeer(peer: number): void;
    lookup(addr: Buffer): number;
    size(): number;
    /** Prefixes in the peers' lists, stale copies of prefixes another peer took over included (allowedips.h). */
    listed(): number;
    /** Lists every prefix (AllowedIPs::entries): a benchmark's anchor; returns the number of prefixes. */
    walk(): number;
    /** A peer's prefixes (masked), each once, in the order given; taken back from another peer: last (AllowedIPs::peer_prefixes). */
    peerPrefixes(peer: number): Array<[Buffer, number]>;
  };
  CookieChecker: new () => {
    setPublicKey(pub: Buffer): void;
    checkMac1(msg: Buffer): boolean;
    checkMac2(msg: Buffer, src: Buffer, nowMs: number): boolean;
    makeReply(msg: Buffer, receiver: number, src: Buffer, nowMs: number): Buffer | null;
  };
  /** The testbed's latency device: packets read from the TUN go back in after delayMs. */
  DelayLine: new (tunName: string, delayMs: number) => { close(): void; packets(): number };
  /**
   * A PolicyEngine of its own with one endpoint's ingress map (policy rows, rows.ts policyRows), to see what the
   * product addon does not show: compactions swapped in and dropped, and the map's slots (entries plus garbage).
   * update() is PolicyEngine::policy_map_update (false: no map); set() replaces the map. Throws on bad rows.
   */
  PolicyProbe: new () => {
    set(rows: Buffer): void;
    update(upserts: Buffer, removes: Buffer): boolean;
    stats(): { compactions: number; dropped: number; slots: number; live: number };
  };
  /**
   * A policy conntrack of its own (native/src/policy/conntrack.h) on a clock the test gives (nowS, seconds), limits
   * (maxEntries, perEndpoint) as setConntrackLimits. create() answers 'refused' for a flow someone else started that
   * a bound refused (kCtSourceFull); stats(endpoint) gives the table's entries, the inbound half's counts, the
   * ingress entries charged to `endpoint` as their destination (`destination`) and its own flows (`own`), how many
   * accounts hold a count (0 once every entry is gone and gc ran: no leak) and the conntrack counters.
   */
  ConntrackProbe: new (maxEntries: number, perEndpoint: number) => {
    create(scope: 'egress' | 'ingress', flow: ConntrackFlow, nowS: number, endpoint: number): 'created' | 'exists' | 'table-full' | 'quota-full' | 'refused';
    lookup(scope: 'egress' | 'ingress', flow: ConntrackFlow, nowS: number): 'miss' | 'established' | 'reply' | 'proxied';
    gc(nowS: number): number;
    stats(endpoint: number): {
      entries: number; inbound: number; inboundEvictable: number; destination: number; own: number; accounts: number;
      counters: Record<string, number>;
    };
  };
  /**
   * The device's probe monitor (native/src/wireguard/probe_monitor.h) on a clock and answers the test gives: watch as
   * probeWatch; round(nowMs, flat [peer, lastMs, rttUs, replies]*) runs one round of the TX thread (a peer not listed
   * does not exist) and returns the peers to probe; drain as probeChanges (rows peer, alive, rttUs).
   */
  ProbeMonitor: new () => {
    watch(add: number[], remove: number[], nowMs: number): void;
    round(nowMs: number, answers: number[]): number[];
    drain(): { rows: number[]; lost: boolean };
  };
  /**
   * The TX thread's control round (Device::pack_control, native/src/wireguard/device_txctl.cc) over real peers and an
   * arena of `cap` bytes: control() queues a message (probe: its 16-byte plaintext), round(cap) packs the queue in
   * order and leaves what did not fit queued (sent: the plaintexts in arena order; dropped: staged packets the bound
   * pushed out). stage() and unstage() keep a peer's queue as the device does (≤ 128, the oldest dropped; both
   * return how many were dropped); a peer not added is gone (its messages are skipped).
   */
  TxControl: new () => {
    addPeer(id: number): void;
    stage(id: number, packet: Buffer): number;
    control(kind: 'keepalive' | 'flush' | 'flush-or-keepalive' | 'probe', id: number, probe?: Buffer): void;
    round(cap: number): { sent: Array<{ peer: number; data: Buffer }>; done: number; dropped: number };
    staged(id: number): Buffer[];
    pending(): number;
    unstage(id: number, packets: Buffer[]): number;
    /** Device::queue_probe_reply: the RX thread's answer to this peer's probe request joins the queue, or the counter it bumped. */
    reply(id: number, probe: Buffer): 'queued' | 'drop_probe_reply_quota' | 'drop_control_overflow';
    removePeer(id: number): void;
    repliesQueued(id: number): number;
  };
  /**
   * The probe cost of `tables` multiply-shift tables (native/src/policy/flatmap.h), each with its own secret seeds,
   * holding `keys` (duplicates dropped): 'ipcache4' is the ipcache's IPv4 table type (its fill limit), 'identity'
   * a policy map's by-identity type. Per table: meanHit, slots read per successful lookup; longest, the longest run
   * of occupied slots. slots: the tables' size. Computed from the keys' home slots (no timing). Throws TypeError on
   * bad args: tables an integer in 1..10,000, keys ≤ 2^22, keys × tables ≤ 2^28.
   */
  flatmapProbeCost(table: 'ipcache4' | 'identity', keys: Uint32Array, tables: number): { slots: number; meanHit: number[]; longest: number[] };
  policyBench(kind: PolicyBenchKind, size: number, policyEntries: number, ops: number): { nsPerOp: number; setupMs: number; ops: number; hits: number };
  /**
   * Maglev table over backend rows (rows.ts backendRows): for each of the m slots, the input index of its backend.
   * build: 'reference' (the plain build it is checked against) or the widest walk the build may use (default: the
   * widest this CPU runs; a narrower CPU runs a narrower one); every build gives the same table.
   */
  maglevBuild(backends: Buffer, m: number, build?: 'reference' | 'scalar' | 'avx2' | 'avx512'): Uint32Array;
  /** The device's check of a tagged identity against the clusters its peer speaks for, in the mesh's layout. */
  peerSpeaksFor(clusters: number[], maxClusters: 255 | 511, identity: number): boolean;
  /**
   * Maglev build ('build', n backends, ns per build) or new-flow lookup ('lookup': frontend, flow hash, slot; ns per
   * lookup); the '-ref' kinds time the plain reference implementation in the same process, 'build-avx2' and
   * 'build-scalar' the build with its walk capped at that (the fallbacks of CPUs without AVX-512 or AVX2).
   */
  maglevBench(kind: 'build' | 'build-avx2' | 'build-scalar' | 'build-ref' | 'lookup' | 'lookup-ref', n: number, m: number, ops: number): { nsPerOp: number; ops: number; hits: number };
  /** The native proxy's request parser and matcher. */
  l7Decide(rules: NativeL7Rules, head: string, client?: string): { allowed: boolean; ref: number; target: string; warnings: string[]; h2cIgnored?: true; upgrade?: true } | { error: string; status: number };
  /** The native proxy's framer on a chunked body: the bytes it takes as the body (and forwards) until it ends or fails. */
  chunkedBody(bytes: Buffer): { consumed: number; done: boolean; failed: boolean };
}

export const testhooks = loadAddon('wiremesh_testhooks') as TestHooksAddon;
