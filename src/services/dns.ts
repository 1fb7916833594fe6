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
 * throws on input.
 */
import dgram from 'node:dgram';
import * as packet from 'dns-packet';
import type { Logger } from '../log.js';
import type { ClusterService } from './service.js';

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
  malformed: number;
}

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
 * A UDP DNS server around an answer function: the node's service DNS
 * (answer() over the agent's services) and the gateway entry point
 * (src/gateway/gslb.ts) share it.
 */
export class DnsServer {
  private socket: dgram.Socket | undefined;
  readonly counters: DnsCounters = { queries: 0, answered: 0, nxdomain: 0, refused: 0, malformed: 0 };

  constructor(
    private readonly answerFor: (q: packet.Question, from: dgram.RemoteInfo) => Answer,
    private readonly log: Logger,
  ) {}

  /** Binds address:port (UDP); rejects with the socket error (e.g. EADDRNOTAVAIL). */
  async listen(address: string, port: number): Promise<void> {
    const s = dgram.createSocket({ type: address.includes(':') ? 'udp6' : 'udp4', reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.bind(port, address, () => {
        s.off('error', reject);
        resolve();
      });
    });
    s.on('error', (err) => this.log.warn({ err: err.message }, 'dns socket error'));
    s.on('message', (msg, rinfo) => this.onMessage(s, msg, rinfo));
    this.socket = s;
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  private onMessage(s: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.counters.queries++;
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
    const rd = q.flag_rd ? packet.RECURSION_DESIRED : 0;
    let res: packet.Packet;
    if (!q.questions || q.questions.length !== 1) {
      res = { type: 'response', id: q.id, flags: rd | RCODE_FORMERR, questions: q.questions ?? [] };
    } else {
      const a = this.answerFor(q.questions[0]!, rinfo);
      if (a.rcode === RCODE_NXDOMAIN) this.counters.nxdomain++;
      else if (a.rcode === RCODE_REFUSED) this.counters.refused++;
      else if (a.rcode === 0) this.counters.answered++;
      res = {
        type: 'response',
        id: q.id,
        flags: (a.rcode === RCODE_REFUSED ? 0 : packet.AUTHORITATIVE_ANSWER) | rd | a.rcode,
        questions: q.questions,
        answers: a.answers,
        authorities: a.authorities,
        additionals: a.additionals,
      };
    }
    let out: Buffer;
    try {
      out = packet.encode(res);
    } catch {
      this.counters.malformed++;
      return;
    }
    s.send(out, rinfo.port, rinfo.address);
  }
}
