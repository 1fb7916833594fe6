/**
 * Ingress gateway (north-south): the agent listens on the node's underlay
 * address for chosen global services and forwards each TCP connection to a
 * backend that the native load balancer picks with the service's Maglev table
 * and affinity (nearest included), hashing the external client's address and
 * port: translation at connect time, as Cilium's socket load balancing does,
 * so the gateway's own connection needs no NAT. It connects from the node's
 * router address (the first address of its pod CIDR, on the TUN): remote
 * backends answer it through the tunnels, local ones directly. With
 * proxyProtocol the backend first receives a PROXY v2 header naming the client.
 *
 * A client whose service has no healthy backend (or is not defined here), or
 * whose upstream fails, is reset, so it retries elsewhere at once. So is one
 * past the connection bounds (GATEWAY_LIMITS).
 */
import net from 'node:net';
import type { Logger } from '../log.js';
import { formatIP, maskPrefix, parseIP } from '../net/ip.js';
import { ClientBounds, type ClientLimits } from '../net/clientbounds.js';
/** What the gateway needs of the agent's services (ServiceDatapath). */
export interface BackendPicker {
  /** The backend a new flow from client:clientPort to service port gets, or undefined (none healthy / unknown). */
  pick(namespace: string, name: string, port: number, client: string, clientPort: number): { ip: string; port: number } | undefined;
  /** Whether a backend is still alive (its node answers, its endpoint exists). */
  backendAlive(ip: string, port: number): boolean;
}
import { proxyV2Header, unmappedIPv4 } from './proxyproto.js';

export interface GatewayListener {
  /** namespace/name of a service defined in this cluster. */
  service: string;
  /** The service port (spec.ports[].port, TCP). */
  port: number;
  /** Where the gateway listens on the node's address. */
  listenPort: number;
  proxyProtocol: boolean;
}

export interface GatewayStats {
  service: string;
  listenPort: number;
  accepted: number;
  active: number;
  failed: number;
  /** Connections reset at accept: the gateway's or their client address's bound was reached (GATEWAY_LIMITS). */
  refused: number;
}

/**
 * Connections the gateway holds at once, over all its listeners (maxConnections) and per client (maxPerClient:
 * an IPv4 address, an IPv6 /64, the unit one party holds; an IPv4-mapped IPv6 address counts as its IPv4 one),
 * from accept until the client's socket closes. Its clients are anyone who reaches the node's address, and each
 * connection holds two of the agent's descriptors (the client's, the upstream's): unbounded, one client could
 * take them all (20 000 by default), and with them the agent's etcd connections, its proxy process and its
 * device. Past a bound a new connection is reset at accept, counted (`refused`) and logged. So that the bound
 * cannot be filled by connections that do nothing, a slot is also given back when the connection is idle (no
 * byte either way) for idleMs, and at most lingerMs after its upstream closed (a client that never sends its
 * own FIN, or stops reading, would otherwise hold it for good).
 */
export interface GatewayLimits extends ClientLimits {
  /** ms without a byte either way before a connection is reset (Envoy's TCP proxy: 1 h; ours holds a bounded slot). */
  idleMs: number;
  /** ms after the upstream closed (what it sent is flushed first) before the client socket is destroyed. */
  lingerMs: number;
}
export const GATEWAY_LIMITS: GatewayLimits = { maxConnections: 4096, maxPerClient: 256, idleMs: 600_000, lingerMs: 5000 };

/** "prefix/bits" of an IPv6 address (16 bytes). */
const v6Prefix = (a: Buffer, bits: number) => `${formatIP(maskPrefix(a, bits))}/${bits}`;

/** The party a client address counts against (GatewayLimits.maxPerClient). */
export function gatewayClientOf(address: string): string {
  const a = parseIP(unmappedIPv4(address));
  if (!a) return address;
  return a.length === 4 ? formatIP(a) : v6Prefix(a, 64);
}

/**
 * The IPv6 site a client address belongs to, its /48 (RFC 6177: a customer's
 * site is commonly assigned one: 65 536 /64s), or undefined for IPv4 (one
 * address, already bounded by gatewayClientOf). gateway-dns bounds it too.
 */
export function gatewaySiteOf(address: string): string | undefined {
  const a = parseIP(unmappedIPv4(address));
  if (!a || a.length === 4) return undefined;
  return v6Prefix(a, 48);
}

const UPSTREAM_TIMEOUT_MS = 5000;

export class IngressGateway {
  private readonly servers: net.Server[] = [];
  /** Open upstream connections and the backend each went to. */
  private readonly upstreams = new Map<net.Socket, { ip: string; port: number; client: net.Socket }>();
  /** Client sockets open, in all and per client address (GatewayLimits). */
  private readonly bounds: ClientBounds;
  private refusedLogged = 0;
  readonly stats: GatewayStats[];

  constructor(
    private readonly address: string,
    private readonly sourceAddress: string,
    private readonly listeners: GatewayListener[],
    private readonly services: BackendPicker,
    private readonly log: Logger,
    /** Opens the upstream connection (tests slow it down to stand in for the mesh's latency). */
    private readonly connectUpstream: (opts: net.TcpNetConnectOpts) => net.Socket = (opts) => net.connect(opts),
    private readonly limits: GatewayLimits = GATEWAY_LIMITS,
  ) {
    this.bounds = new ClientBounds(limits);
    this.stats = listeners.map((l) => ({ service: l.service, listenPort: l.listenPort, accepted: 0, active: 0, failed: 0, refused: 0 }));
  }

  async start(): Promise<void> {
    for (const [i, l] of this.listeners.entries()) {
      const server = net.createServer((client) => this.forward(l, this.stats[i]!, client));
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(l.listenPort, this.address, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => this.log.warn({ err: err.message, listener: l }, 'gateway listener error'));
      this.servers.push(server);
      this.log.info({ address: this.address, port: l.listenPort, service: l.service }, 'gateway listening');
    }
  }

  stop(): void {
    for (const s of this.servers) s.close();
  }

  /**
   * Resets the connections whose backend died (the agent calls this after
   * each service recompute): their clients fail at once and reconnect to a
   * live backend, as flows through the data path's load balancer do.
   */
  resetDead(): number {
    let n = 0;
    for (const [up, u] of this.upstreams) {
      if (this.services.backendAlive(u.ip, u.port)) continue;
      this.upstreams.delete(up);
      up.resetAndDestroy();
      if (!u.client.destroyed) u.client.resetAndDestroy();
      n++;
    }
    return n;
  }

  /** Takes a connection slot for a new client socket, released when it closes; false (reset, counted): no slot. */
  private admit(l: GatewayListener, st: GatewayStats, client: net.Socket, src: string): boolean {
    const mine = this.bounds.of(src);
    const reason = this.bounds.admit(client, src);
    if (!reason) return true;
    st.refused++;
    // a flood is logged at its start and then every 1000th, not once per connection
    if (this.refusedLogged++ < 20 || this.refusedLogged % 1000 === 0)
      this.log.warn({ service: l.service, listenPort: l.listenPort, client: src, reason: reason === 'connection bound' ? 'gateway connection bound' : reason, open: this.bounds.open, ofClient: mine, refused: st.refused }, 'gateway connection refused');
    return false;
  }

  private forward(l: GatewayListener, st: GatewayStats, client: net.Socket): void {
    // Addresses now: a client that leaves before the upstream connects has none later.
    const peer = { src: client.remoteAddress, srcPort: client.remotePort, dst: client.localAddress, dstPort: client.localPort };
    if (!this.admit(l, st, client, gatewayClientOf(peer.src ?? ''))) return;
    st.accepted++;
    st.active++;
    let done = false;
    const finish = (failed: boolean) => {
      if (done) return;
      done = true;
      st.active--;
      if (failed) st.failed++;
    };
    client.on('error', () => undefined);
    const [ns, name] = l.service.split('/') as [string, string];
    const backend = peer.src ? this.services.pick(ns, name, l.port, peer.src, peer.srcPort!) : undefined;
    if (!backend) {
      finish(true);
      client.resetAndDestroy();
      return;
    }
    const up = this.connectUpstream({ host: backend.ip, port: backend.port, localAddress: this.sourceAddress });
    this.upstreams.set(up, { ...backend, client });
    up.once('close', () => this.upstreams.delete(up));
    up.setTimeout(UPSTREAM_TIMEOUT_MS, () => up.destroy(new Error('upstream connect timeout')));
    up.once('connect', () => {
      up.setTimeout(0);
      if (client.destroyed || !peer.src || !peer.dst) {
        up.destroy(); // the client is gone (a health probe, an impatient client)
        return;
      }
      if (l.proxyProtocol) up.write(proxyV2Header(peer.src, peer.srcPort!, peer.dst, peer.dstPort!));
      client.pipe(up);
      up.pipe(client);
    });
    // an error on either side resets the other: clients see a failure at once, not a hang
    up.on('error', () => {
      finish(true);
      if (!client.destroyed) client.resetAndDestroy();
    });
    client.on('error', () => {
      if (!up.destroyed) up.resetAndDestroy();
    });
    // a connection with no byte either way for idleMs gives its slot back
    client.setTimeout(this.limits.idleMs, () => {
      client.resetAndDestroy();
      if (!up.destroyed) up.resetAndDestroy();
    });
    up.on('close', () => {
      finish(false);
      if (client.destroyed) return;
      client.end(); // what the upstream sent is flushed; then the socket goes, whether or not the client closes its side
      setTimeout(() => client.destroy(), this.limits.lingerMs).unref();
    });
    client.on('close', () => {
      if (!up.destroyed) up.end();
    });
  }
}
