/**
 * The UDP size of a DNS answer (RFC 1035 §4.2.1, RFC 6891 §6.2.3-6.2.5):
 * without an OPT record in the query the answer is at most 512 bytes; with
 * one, at most the size it advertises, never below 512 and never above
 * EDNS_MAX_PAYLOAD (1232: the DNS Flag Day 2020 size, which fits an IPv6
 * path's 1280 MTU unfragmented; it is also what we advertise back).
 *
 * An answer that does not fit loses, as CoreDNS's (miekg/dns Msg.Truncate)
 * does: first the additional records (without TC: they are optional, RFC 2181
 * §9), then the authority records and as many answer records from the end as
 * needed, with TC=1. The records kept are whole and come first in the
 * server's order (gateway DNS: the client's region first). A client that
 * retries over TCP (dnstcp.ts) gets the whole answer there; one that does
 * not (musl before 1.2.4) uses the records kept.
 */
import * as packet from 'dns-packet';

export const PLAIN_UDP_PAYLOAD = 512;
export const EDNS_MAX_PAYLOAD = 1232;
/** RFC 6891 §9: the extended RCODE for an EDNS version we do not speak (upper 8 bits in OPT, lower 4 in the header). */
export const RCODE_BADVERS = 16;

/** What a query's OPT record asks for; undefined when it has none. */
export interface Edns {
  /** The answer's byte bound: the advertised size clamped to [512, EDNS_MAX_PAYLOAD]. */
  payload: number;
  version: number;
  /** The DO bit (RFC 3225 §3): copied into the answer's OPT record. */
  dnssecOk: boolean;
}

/**
 * The EDNS of a decoded query: undefined without an OPT record, 'formerr'
 * with more than one (RFC 6891 §6.1.1).
 */
export function ednsOf(q: packet.DecodedPacket): Edns | undefined | 'formerr' {
  const opts = (q.additionals ?? []).filter((a) => a.type === 'OPT') as packet.OptAnswer[];
  if (opts.length === 0) return undefined;
  if (opts.length > 1) return 'formerr';
  const o = opts[0]!;
  return { payload: Math.min(EDNS_MAX_PAYLOAD, Math.max(PLAIN_UDP_PAYLOAD, o.udpPayloadSize ?? 0)), version: o.ednsVersion ?? 0, dnssecOk: ((o.flags ?? 0) & packet.DNSSEC_OK) !== 0 };
}

/**
 * The OPT record of an answer to an EDNS query: our size, BADVERS's upper
 * bits when asked, and the query's DO bit (RFC 3225 §3: the server copies it).
 */
export function optRecord(rcode: number, edns: Edns): packet.OptAnswer {
  const flags = edns.dnssecOk ? packet.DNSSEC_OK : 0;
  return { type: 'OPT', name: '.', udpPayloadSize: EDNS_MAX_PAYLOAD, extendedRcode: rcode >> 4, ednsVersion: 0, flags } as packet.OptAnswer;
}

/**
 * Encodes `res` in at most `limit` bytes, truncating as described above.
 * `opt` (the OPT record, when the query had one) is kept in every case.
 * Throws what dns-packet throws on a record it cannot encode.
 */
export function encodeWithin(res: packet.Packet, limit: number, opt?: packet.OptAnswer): { bytes: Buffer; truncated: boolean } {
  const withOpt = (p: packet.Packet): packet.Packet => (opt ? { ...p, additionals: [...(p.additionals ?? []), opt] } : p);
  const whole = withOpt(res);
  if (packet.encodingLength(whole) <= limit) return { bytes: packet.encode(whole), truncated: false };
  const noExtra = withOpt({ ...res, additionals: [] });
  if (packet.encodingLength(noExtra) <= limit) return { bytes: packet.encode(noExtra), truncated: false };
  const answers = res.answers ?? [];
  const cut = (k: number): packet.Packet => withOpt({ ...res, flags: (res.flags ?? 0) | packet.TRUNCATED_RESPONSE, answers: answers.slice(0, k), authorities: [], additionals: [] });
  // the largest k whose packet fits (the length grows with k; k = 0 always fits: a question is ≤ 260 bytes)
  let lo = 0;
  let hi = answers.length;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (packet.encodingLength(cut(mid)) <= limit) lo = mid;
    else hi = mid - 1;
  }
  return { bytes: packet.encode(cut(lo)), truncated: true };
}
