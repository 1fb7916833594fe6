/**
 * DNS over TCP (RFC 7766; framing RFC 1035 §4.2.2: each message preceded by
 * its length, 2 bytes, network order) on the UDP server's address and port:
 * the part of DnsServer (dns.ts) that a client retrying after TC=1 reaches.
 * Queries on one connection may be pipelined; each is answered as soon as it
 * is read, so answers come in the queries' order (RFC 7766 §6.2.1.1 allows
 * either). The answer itself is DnsServer's, with a 65 535-byte bound instead
 * of the UDP size, and the query counts against the same per-source buckets
 * (dnslimit.ts) as a datagram: one limiter for both transports.
 *
 * Its clients are as untrusted as the UDP ones (any pod; for gateway-dns
 * anyone on the network), and a connection holds a descriptor and memory, so
 * everything a connection can hold is bounded (DnsTcpLimits).
 */
import net from 'node:net';
import type { RemoteInfo } from 'node:dgram';
import type { Logger } from '../log.js';
import { KeyCounts } from '../net/keycounts.js';

/**
 * The bounds of the TCP side, per server.
 *
 * - maxConnections: connections at once. At the bound a new connection makes
 *   room by closing the one idle longest of the source holding the most
 *   connections (RFC 7766 §6.2.3: a server under pressure may close idle
 *   connections), so parties holding slots cannot lock others out, and a
 *   source with one connection is evicted only when every other holds one
 *   (a source never evicts its own; with maxPerSource below maxConnections
 *   there is always another's). Idle counts from the last query the rate
 *   limiter admitted: queries dropped over quota are no activity.
 * - maxPerSource / maxPerPrefix: connections at once per source (the key the
 *   UDP bucket uses: an address; gateway-dns an IPv4 address or an IPv6 /64)
 *   and per prefix (gateway-dns: an IPv6 /48); more are reset at accept.
 * - idleMs: a connection with no complete query for this long (from accept,
 *   then from its last query) is closed. Bytes that do not complete a query do
 *   not count, so a client sending one byte a second (slowloris) or one that
 *   stops reading its answers (its reads stall, so no new query is taken) is
 *   closed idleMs after its last query.
 * - maxQueryBytes: the largest length prefix accepted (a query has one
 *   question: ≤ 260 bytes of name, plus EDNS options); a larger one, or 0,
 *   closes the connection (the framing cannot be trusted after it).
 * - maxPending: answers written and not yet taken by the kernel, per
 *   connection; at the bound the connection is not read (its later queries
 *   wait in the kernel) until one is taken: a client that does not read holds
 *   at most maxPending answers (≤ 64 KiB each) of our memory. Not in this
 *   bound: the kernel's send buffer of the connection (up to
 *   net.ipv4.tcp_wmem's max, 4 MiB by default, autotuned), which holds
 *   answers it has taken and the client has not read.
 */
export interface DnsTcpLimits {
  maxConnections: number;
  maxPerSource: number;
  maxPerPrefix: number;
  idleMs: number;
  maxQueryBytes: number;
  maxPending: number;
}

/**
 * 256 connections (a descriptor and ≤ 16 answers each); 8 per source (a stub
 * resolver needs one, a few while reconnecting), 32 per gateway-dns /48 (4 x
 * a /64's); 10 s idle (RFC 7766 §6.2.3: "on the order of seconds"; BIND and
 * Unbound 30 s: ours is a short bound, since TCP here is only the retry after
 * TC=1); 4096-byte queries; 16 pending answers.
 */
export const DNS_TCP_LIMITS: DnsTcpLimits = { maxConnections: 256, maxPerSource: 8, maxPerPrefix: 32, idleMs: 10_000, maxQueryBytes: 4096, maxPending: 16 };

/** The largest DNS message a 2-byte length prefix can frame. */
export const TCP_MAX_MESSAGE = 65_535;

/** What happened to the TCP side's connections (all totals since start but `open`). */
export interface DnsTcpCounters {
  /** Queries read over TCP (also counted in DnsCounters.queries). */
  queries: number;
  accepted: number;
  /** Connections open now. */
  open: number;
  /** Reset at accept: their source or prefix was at its bound, or every slot was held by a different source. */
  refused: number;
  /** Closed to make room for a new connection (the idlest of the source holding the most). */
  evicted: number;
  /** Closed after idleMs without a complete query. */
  idle: number;
  /** Closed on a length prefix of 0 or over maxQueryBytes. */
  badLength: number;
}

export const newTcpCounters = (): DnsTcpCounters => ({ queries: 0, accepted: 0, open: 0, refused: 0, evicted: 0, idle: 0, badLength: 0 });

/**
 * Answers one query's bytes (rate check, decode, answer, encode within `limit`); undefined: nothing to send
 * (malformed); 'limited': dropped by the rate limiter before decoding (no activity of its connection).
 */
export type DnsHandler = (msg: Buffer, from: RemoteInfo, limit: number) => Buffer | undefined | 'limited';

interface Conn {
  sock: net.Socket;
  from: RemoteInfo;
  source: string;
  prefix: string | undefined;
  /** Input read and not yet taken as queries (at most one partial frame, unless reading is paused). */
  buf: Buffer;
  /** Answers written and not yet taken by the kernel. */
  pending: number;
  /** performance.now() of accept or the last complete query the rate limiter admitted. */
  lastQuery: number;
  /** The client sent its FIN: answer what is complete, then end our side. */
  ended: boolean;
  timer: NodeJS.Timeout;
}

const EMPTY = Buffer.alloc(0);
const REFUSE_LOG_EVERY = 1000;

export class DnsTcpListener {
  private server: net.Server | undefined;
  private readonly conns = new Set<Conn>();
  private readonly perSource = new KeyCounts();
  private readonly perPrefix = new KeyCounts();
  private refusedLogged = 0;

  constructor(
    private readonly handle: DnsHandler,
    private readonly keyOf: (address: string) => string,
    private readonly prefixOf: ((address: string) => string | undefined) | undefined,
    readonly limits: DnsTcpLimits,
    readonly counters: DnsTcpCounters,
    private readonly log: Logger,
  ) {}

  /** Listens on address:port (TCP); rejects with the listen error (EADDRINUSE, EADDRNOTAVAIL). */
  async listen(address: string, port: number): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true }, (sock) => this.accept(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ port, host: address, exclusive: true }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (err) => this.log.warn({ err: err.message }, 'dns tcp listener error'));
    this.server = server;
  }

  /** Stops listening and closes every connection. */
  close(): void {
    this.server?.close();
    this.server = undefined;
    for (const c of this.conns) c.sock.destroy();
  }

  private accept(sock: net.Socket): void {
    sock.on('error', () => undefined); // a reset client: 'close' follows and releases the slot
    const address = sock.remoteAddress;
    if (!address) return void sock.destroy();
    const source = this.keyOf(address);
    const prefix = this.prefixOf?.(address);
    const reason =
      this.perSource.of(source) >= this.limits.maxPerSource ? 'per-source connection bound'
      : prefix !== undefined && this.perPrefix.of(prefix) >= this.limits.maxPerPrefix ? 'per-prefix connection bound'
      : this.conns.size >= this.limits.maxConnections && !this.evictOne(source) ? 'connection bound'
      : undefined;
    if (reason) return this.refuse(sock, source, reason);
    const now = performance.now();
    const c: Conn = {
      sock,
      from: { address, family: sock.remoteFamily === 'IPv6' ? 'IPv6' : 'IPv4', port: sock.remotePort ?? 0, size: 0 },
      source,
      prefix,
      buf: EMPTY,
      pending: 0,
      lastQuery: now,
      ended: false,
      timer: setTimeout(() => {
        this.counters.idle++;
        sock.destroy();
      }, this.limits.idleMs),
    };
    this.conns.add(c);
    this.counters.accepted++;
    this.counters.open = this.conns.size;
    this.perSource.add(source);
    if (prefix !== undefined) this.perPrefix.add(prefix);
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      c.buf = c.buf.length === 0 ? chunk : Buffer.concat([c.buf, chunk]);
      this.drain(c);
    });
    sock.on('end', () => {
      c.ended = true;
      this.drain(c);
    });
    sock.once('close', () => this.release(c));
  }

  /** Reset at accept, counted; logged at a flood's start and then every REFUSE_LOG_EVERY-th. */
  private refuse(sock: net.Socket, source: string, reason: string): void {
    this.counters.refused++;
    if (this.refusedLogged++ < 20 || this.refusedLogged % REFUSE_LOG_EVERY === 0)
      this.log.warn({ source, reason, open: this.conns.size, ofSource: this.perSource.of(source), refused: this.counters.refused }, 'dns tcp connection refused');
    sock.resetAndDestroy();
  }

  /**
   * Makes room: closes the idlest connection of the source holding the most
   * (not `source`'s own: a source does not push out its own). By the most, not
   * the idlest overall: a source's queries (even over quota) cannot push a
   * source with one connection out while another holds more. O(maxConnections),
   * only when full.
   */
  private evictOne(source: string): boolean {
    let victim: Conn | undefined;
    let most = 0;
    for (const c of this.conns) {
      if (c.source === source) continue;
      const n = this.perSource.of(c.source);
      if (n > most || (n === most && c.lastQuery < victim!.lastQuery)) [victim, most] = [c, n];
    }
    if (!victim) return false;
    this.counters.evicted++;
    this.release(victim); // now, not at its 'close': the slot is the new connection's
    victim.sock.destroy();
    return true;
  }

  private release(c: Conn): void {
    if (!this.conns.delete(c)) return;
    clearTimeout(c.timer);
    c.buf = EMPTY;
    this.counters.open = this.conns.size;
    this.perSource.remove(c.source);
    if (c.prefix !== undefined) this.perPrefix.remove(c.prefix);
  }

  /** Answers the complete queries read, up to maxPending unflushed answers; then reads on, or ends after a FIN. */
  private drain(c: Conn): void {
    const { sock } = c;
    while (!sock.destroyed) {
      if (c.pending >= this.limits.maxPending) return void sock.pause(); // resumed by a write's callback
      if (c.buf.length < 2) break;
      const len = c.buf.readUInt16BE(0);
      if (len === 0 || len > this.limits.maxQueryBytes) {
        this.counters.badLength++;
        this.log.debug({ source: c.source, length: len }, 'dns tcp length prefix out of bounds: connection closed');
        return void sock.destroy();
      }
      if (c.buf.length < 2 + len) break;
      const msg = c.buf.subarray(2, 2 + len);
      c.buf = c.buf.length === 2 + len ? EMPTY : c.buf.subarray(2 + len);
      this.counters.queries++;
      const out = this.handle(msg, c.from, TCP_MAX_MESSAGE);
      // a query dropped over quota costs the client nothing: it must not keep its connection from idling out or being evicted
      if (out === 'limited') continue;
      c.lastQuery = performance.now();
      c.timer.refresh();
      if (out) this.send(c, out);
    }
    if (sock.destroyed) return;
    if (c.ended) return void sock.end(); // written answers are flushed before our FIN; a partial query is dropped
    if (sock.isPaused()) sock.resume();
  }

  private send(c: Conn, out: Buffer): void {
    const frame = Buffer.allocUnsafe(2 + out.length);
    frame.writeUInt16BE(out.length, 0);
    out.copy(frame, 2);
    c.pending++;
    c.sock.write(frame, () => {
      c.pending--;
      if (c.pending === this.limits.maxPending - 1 && !c.sock.destroyed) this.drain(c);
    });
  }
}
