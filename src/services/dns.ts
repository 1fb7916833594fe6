/**
 * The node's DNS server for service names (UDP, Node's dgram; records coded
 * with dns-packet). Authoritative for two zones:
 *
 *   <svc>.<ns>.svc.cluster.local      the local definition's VIP (any service)
 *   <svc>.<ns>.svc.clusterset.local   the local VIP of a global service
 *   _<port>._<tcp|udp>.<svc>.<ns>.svc.<zone>   SRV (and the A/AAAA as additional)
 *   <svc>.<ns>.svc.<zone> SRV         one SRV per port
 *
 * Unknown names inside a zone get NXDOMAIN with the zone's SOA (negative
 * caching); names outside them REFUSED: the agent is not a recursive
 * resolver. Malformed queries are dropped and counted; the server never
 * throws on input. Each source is bounded before its query is decoded
 * (dnslimit.ts) and answers fit the client's UDP size (dnssize.ts); the
 * same port answers over TCP (dnstcp.ts), where they are whole.
 */
import dgram from 'node:dgram';
import * as packet from 'dns-packet';
import type { Logger } from '../log.js';
import type { ClusterService } from './service.js';
import { DNS_PREFIX_LIMITS, DNS_SOURCE_LIMITS, SourceLimiter, type SourceLimits } from './dnslimit.js';
import { ednsOf, encodeWithin, optRecord, PLAIN_UDP_PAYLOAD, RCODE_BADVERS } from './dnssize.js';
import { DNS_TCP_LIMITS, DnsTcpListener, newTcpCounters, type DnsTcpCounters, type DnsTcpLimits } from './dnstcp.js';

export const ZONES = ['svc.cluster.local', 'svc.clusterset.local'] as const;
export const TTL_S = 5;

export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_REFUSED = 5;
const RCODE_FORMERR = 1;

/** The service definitions the server answers from (the agent's ServiceDatapath). */
export interface ServiceDirectory {
  lookup(namespace: string, name: string): ClusterService | undefined;
}

export interface DnsCounters {
  queries: number;
  answered: number;
  nxdomain: number;
  refused: number;
  /** SERVFAIL answers (gateway-dns: a name with no healthy gateway). */
  servfail: number;
  malformed: number;
  /** Queries dropped undecoded: their source was over its quota (dnslimit.ts). */
  limited: number;
  /** Answers sent with TC=1 (did not fit the client's UDP size, or over TCP 65 535 bytes; dnssize.ts). */
  truncated: number;
  /** Sources in the per-source table now, and those it forgot because it was full. */
  sources: number;
  sourcesEvicted: number;
  /** The TCP side's connections (dnstcp.ts); its queries are in the counts above too. */
  tcp: DnsTcpCounters;
  /** What listens now; tcpError: why TCP does not while UDP does (the listen error, e.g. EADDRINUSE). */
  listening: { udp: boolean; tcp: boolean; tcpError?: string };
}

/** Options of a DnsServer; every one has a default. */
export interface DnsServerOptions {
  limits?: SourceLimits;
  /** The party a source address counts against (default: the address itself). */
  sourceOf?: (address: string) => string;
  /**
   * A second party the address also counts against, or undefined for none
   * (gateway-dns: an IPv6 address's /48); its own bucket, `prefixLimits`, is
   * checked with the source's: a query is answered only when both have a
   * token, and a query either refuses costs a token of neither.
   */
  prefixOf?: (address: string) => string | undefined;
  /** The prefix bound (default DNS_PREFIX_LIMITS). */
  prefixLimits?: SourceLimits;
  /** SO_RCVBUF asked for (the kernel caps it at net.core.rmem_max). */
  recvBufferBytes?: number;
  /** The TCP side's bounds (default DNS_TCP_LIMITS). */
  tcpLimits?: DnsTcpLimits;
}

/**
 * 4 MiB: the kernel queues ~4000 small queries (each costs ~1 KiB of buffer)
 * while the JS thread is busy, instead of ~200 with the 208 KiB default, so
 * a burst does not push an honest query out before the per-source check sees it.
 */
export const DNS_RECV_BUFFER_BYTES = 4 << 20;
const LIMIT_LOG_MS = 10_000;
/** Binds tried on port 0 when TCP finds the port the kernel gave UDP taken. */
const PORT0_ATTEMPTS = 5;

/** One question's answer: rcode, answer / additional / authority records. */
export interface Answer {
  rcode: number;
  answers: packet.Answer[];
  additionals: packet.Answer[];
  authorities: packet.Answer[];
}

/** Answers one question (exported for unit tests). */
export function answer(dir: ServiceDirectory, q: packet.Question): Answer {
  const name = q.name.toLowerCase().replace(/\.$/, '');
  const zone = ZONES.find((z) => name === z || name.endsWith(`.${z}`));
  const empty: Answer = { rcode: 0, answers: [], additionals: [], authorities: [] };
  if (!zone) return { ...empty, rcode: RCODE_REFUSED };
  const soa: packet.Answer = {
    type: 'SOA',
    name: zone,
    ttl: TTL_S,
    data: { mname: `ns.dns.${zone}`, rname: `hostmaster.${zone}`, serial: 1, refresh: 7200, retry: 1800, expire: 86400, minimum: TTL_S },
  };
  const nx: Answer = { ...empty, rcode: RCODE_NXDOMAIN, authorities: [soa] };
  const labels = name.slice(0, name.length - zone.length).replace(/\.$/, '').split('.').filter((l) => l !== '');
  let portFilter: { port: string; proto: string } | undefined;
  if (labels.length === 4 && labels[0]!.startsWith('_') && labels[1]!.startsWith('_')) {
    portFilter = { port: labels[0]!.slice(1), proto: labels[1]!.slice(1) };
    labels.splice(0, 2);
  }
  if (labels.length !== 2) return nx;
  const [svcName, ns] = labels as [string, string];
  const svc = dir.lookup(ns, svcName);
  if (!svc || !svc.vip || (zone === 'svc.clusterset.local' && !svc.global)) return nx;
  const host = `${svcName}.${ns}.${zone}`;
  const v6 = svc.vip.includes(':');
  const addr: packet.Answer = v6 ? { type: 'AAAA', name: host, ttl: TTL_S, data: svc.vip } : { type: 'A', name: host, ttl: TTL_S, data: svc.vip };
  const ports = svc.ports.filter((p) => !portFilter || ((p.name === portFilter.port || String(p.port) === portFilter.port) && p.protocol.toLowerCase() === portFilter.proto));
  if (portFilter && ports.length === 0) return nx;
  const srv = ports.map((p): packet.Answer => ({ type: 'SRV', name, ttl: TTL_S, data: { priority: 0, weight: Math.floor(100 / ports.length), port: p.port, target: host } }));
  switch (q.type) {
    case 'A':
    case 'AAAA':
      if (portFilter) return { ...empty, authorities: [soa] };
      return (q.type === 'AAAA') === v6 ? { ...empty, answers: [addr] } : { ...empty, authorities: [soa] }; // NODATA
    case 'SRV':
      return { ...empty, answers: srv, additionals: [addr] };
    default:
      if ((q.type as string) === 'ANY') return { ...empty, answers: portFilter ? srv : [addr, ...srv] };
      return { ...empty, authorities: [soa] };
  }
}

/**
 * A DNS server (UDP and TCP on one address and port) around an answer
 * function: the node's service DNS (answer() over the agent's services) and
 * the gateway entry point (src/gateway/gslb.ts) share it, and with it the
 * per-source bound (dnslimit.ts, one for both transports), the kernel receive
 * buffer, the answer size (dnssize.ts) and the TCP side's bounds (dnstcp.ts).
 */
export class DnsServer {
  private socket: dgram.Socket | undefined;
  readonly counters: DnsCounters = { queries: 0, answered: 0, nxdomain: 0, refused: 0, servfail: 0, malformed: 0, limited: 0, truncated: 0, sources: 0, sourcesEvicted: 0, tcp: newTcpCounters(), listening: { udp: false, tcp: false } };
  private readonly tcp: DnsTcpListener;
  private readonly limiter: SourceLimiter;
  private readonly keyOf: (address: string) => string;
  private readonly prefixOf: ((address: string) => string | undefined) | undefined;
  private readonly prefixLimiter: SourceLimiter;
  private readonly recvBufferBytes: number;
  /** Drops over quota since the last warning, and when that was (performance.now(), ms). */
  private limitedSinceLog = 0;
  private lastLimitLog = -Infinity;

  constructor(
    private readonly answerFor: (q: packet.Question, from: dgram.RemoteInfo) => Answer,
    private readonly log: Logger,
    opts: DnsServerOptions = {},
  ) {
    this.limiter = new SourceLimiter(opts.limits ?? DNS_SOURCE_LIMITS);
    this.keyOf = opts.sourceOf ?? ((a) => a);
    this.prefixOf = opts.prefixOf;
    this.prefixLimiter = new SourceLimiter(opts.prefixLimits ?? DNS_PREFIX_LIMITS);
    this.recvBufferBytes = opts.recvBufferBytes ?? DNS_RECV_BUFFER_BYTES;
    const handle = (msg: Buffer, from: dgram.RemoteInfo, limit: number) => this.handle(msg, from, limit);
    this.tcp = new DnsTcpListener(handle, this.keyOf, this.prefixOf, opts.tcpLimits ?? DNS_TCP_LIMITS, this.counters.tcp, log);
  }

  /**
   * Binds address:port, UDP then TCP on the same port (port 0: the one the
   * kernel gave UDP); rejects with UDP's socket error (e.g. EADDRNOTAVAIL,
   * EADDRINUSE). When only TCP cannot listen (its port held by another
   * server, e.g. dnsmasq on the wildcard), UDP answers on without it: logged
   * as an error, and `counters.listening` says so (status and metrics).
   */
  async listen(address: string, port: number): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const s = await this.bindUdp(address, port);
      try {
        await this.tcp.listen(address, s.address().port);
        this.counters.listening.tcp = true;
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        // port 0: the kernel chose UDP's port and another socket may hold its TCP twin; another port does as well
        if (port === 0 && e.code === 'EADDRINUSE' && attempt < PORT0_ATTEMPTS) {
          s.close();
          continue;
        }
        this.counters.listening.tcpError = e.message;
        this.log.error({ err: e.message, address, port: s.address().port }, 'dns over tcp is off (UDP answers on): cannot listen there; answers with TC=1 cannot be retried');
      }
      s.on('error', (err) => this.log.warn({ err: err.message }, 'dns socket error'));
      s.on('message', (msg, rinfo) => this.onMessage(s, msg, rinfo));
      this.socket = s;
      this.counters.listening.udp = true;
      return;
    }
  }

  private async bindUdp(address: string, port: number): Promise<dgram.Socket> {
    const s = dgram.createSocket({ type: address.includes(':') ? 'udp6' : 'udp4', reuseAddr: true, recvBufferSize: this.recvBufferBytes });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(port, address, () => {
        s.off('error', reject);
        resolve();
      });
    });
    return s;
  }

  /** The port listened on (UDP and TCP), or undefined before listen(). */
  get port(): number | undefined {
    return this.socket?.address().port;
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
    this.tcp.close();
    this.counters.listening = { udp: false, tcp: false };
  }

  /** Over quota: counted, and one warning per LIMIT_LOG_MS at most (a flood must not become a log flood). */
  private limited(source: string, now: number, limits: SourceLimits): 'limited' {
    this.counters.limited++;
    this.limitedSinceLog++;
    if (now - this.lastLimitLog < LIMIT_LOG_MS) return 'limited';
    this.log.warn({ source, dropped: this.limitedSinceLog, limits }, 'dns queries over a source\'s quota dropped');
    this.lastLimitLog = now;
    this.limitedSinceLog = 0;
    return 'limited';
  }

  private onMessage(s: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    const out = this.handle(msg, rinfo, undefined);
    if (out instanceof Buffer) s.send(out, rinfo.port, rinfo.address);
  }

  /**
   * One query's answer bytes, or undefined (malformed) or 'limited' (over quota, undecoded): counted.
   * `limit`: the transport's bound (TCP: 65 535), or undefined for UDP's
   * (512, or the query's EDNS size).
   */
  private handle(msg: Buffer, rinfo: dgram.RemoteInfo, limit: number | undefined): Buffer | undefined | 'limited' {
    this.counters.queries++;
    const now = performance.now();
    const source = this.keyOf(rinfo.address);
    // the prefix first: a prefix over its quota refuses before its sources enter the table
    const prefix = this.prefixOf?.(rinfo.address);
    if (prefix !== undefined && !this.prefixLimiter.ready(prefix, now)) return this.limited(prefix, now, this.prefixLimiter.limits);
    const ok = this.limiter.allow(source, now);
    this.counters.sources = this.limiter.size;
    this.counters.sourcesEvicted = this.limiter.evicted;
    if (!ok) return this.limited(source, now, this.limiter.limits);
    if (prefix !== undefined) this.prefixLimiter.take(prefix);
    let q: packet.DecodedPacket;
    try {
      q = packet.decode(msg);
    } catch {
      this.counters.malformed++;
      return;
    }
    if (q.type !== 'query') {
      this.counters.malformed++;
      return;
    }
    const reply = this.reply(q, rinfo);
    try {
      const r = encodeWithin(reply.res, limit ?? reply.limit, reply.opt);
      if (r.truncated) this.counters.truncated++;
      return r.bytes;
    } catch {
      this.counters.malformed++;
      return;
    }
  }

  /** The answer to a decoded query, its byte bound and OPT record (when the query had EDNS). */
  private reply(q: packet.DecodedPacket, rinfo: dgram.RemoteInfo): { res: packet.Packet; limit: number; opt?: packet.OptAnswer } {
    const rd = q.flag_rd ? packet.RECURSION_DESIRED : 0;
    const edns = ednsOf(q);
    const limit = edns === undefined || edns === 'formerr' ? PLAIN_UDP_PAYLOAD : edns.payload;
    const fail = (rcode: number, questions: packet.Question[]) => ({ res: { type: 'response' as const, id: q.id, flags: rd | (rcode & 0xf), questions }, limit, opt: edns === undefined || edns === 'formerr' ? undefined : optRecord(rcode, edns) });
    // a FORMERR echoes no questions: a query with thousands would make an answer as large as itself
    if (edns === 'formerr' || !q.questions || q.questions.length !== 1) return fail(RCODE_FORMERR, []);
    if (edns?.version !== undefined && edns.version !== 0) return fail(RCODE_BADVERS, q.questions);
    const a = this.answerFor(q.questions[0]!, rinfo);
    if (a.rcode === RCODE_NXDOMAIN) this.counters.nxdomain++;
    else if (a.rcode === RCODE_REFUSED) this.counters.refused++;
    else if (a.rcode === RCODE_SERVFAIL) this.counters.servfail++;
    else if (a.rcode === 0) this.counters.answered++;
    const res: packet.Packet = {
      type: 'response',
      id: q.id,
      flags: (a.rcode === RCODE_REFUSED ? 0 : packet.AUTHORITATIVE_ANSWER) | rd | a.rcode,
      questions: q.questions,
      answers: a.answers,
      authorities: a.authorities,
      additionals: a.additionals,
    };
    return { res, limit, opt: edns ? optRecord(0, edns) : undefined };
  }
}
