// What a hub may relay: pinned at `clustermesh connect` (relayCIDRs, records/relaypin.ts), never a range that names
// no host of its own (net/ip.ts notAHost). Written as the attacker: a hostile hub whose relayed CIDRs become
// `route replace <cidr> dev wm0` on every node of ours would take our nodes' metadata service or resolver, or any
// public range, into its tunnel. Oracle: RFC 6890 special-purpose ranges and the clouds' documented addresses.
import { describe, expect, it } from 'vitest';
import { pinFor, relayCIDRsFor } from '../../src/controlplane/clustermesh.js';
import { pinnedKey } from '../../src/controlplane/keys.js';
import { pinnedClusterCodec, Trust, tryDecode, type PinnedCluster } from '../../src/controlplane/records/index.js';
import { MeshError } from '../../src/errors.js';
import { formatPrefix, maskPrefix, notAHost, notAHostIn, parseIP, parsePrefix, prefixContains, prefixCovers } from '../../src/net/ip.js';

const hub = (relayCIDRs?: string[]): PinnedCluster => ({ name: 'h', id: 9, podCIDRs: ['100.69.0.0/16'], underlayCIDRs: ['198.18.9.0/24'], relay: true, ...(relayCIDRs ? { relayCIDRs } : {}), acceptPolicies: false });

/** c1 (local) and hub h pinned with `relayCIDRs`; the offer's kept CIDRs and what was reported refused. */
function offer(relayCIDRs: string[] | undefined, podCIDRs: string[]): { kept: string[]; refused: string[] } {
  const t = new Trust('c1', 1, ['100.65.0.0/16']);
  t.setLocalUnderlay(['198.18.1.0/24']);
  expect(t.pin(hub(relayCIDRs))).toBeUndefined();
  const r = t.relay('h', { cluster: 'h', node: 'n1', podCIDRs }, () => false);
  if (typeof r === 'string') throw new Error(r);
  return { kept: r.record.podCIDRs, refused: r.dropped ? [r.dropped] : [] };
}

describe('Trust.relay: only inside the pinned relay CIDRs', () => {
  it('the honest hub: CIDRs of the clusters behind it are kept, nothing reported (IPv4 and IPv6)', () => {
    expect(offer(['100.66.0.0/16', 'fd66::/48'], ['100.66.1.0/24', '100.66.0.0/16', 'fd66:0:0:1::/64'])).toEqual({ kept: ['100.66.1.0/24', '100.66.0.0/16', 'fd66:0:0:1::/64'], refused: [] });
  });

  it('a public range, a range wider than the pin, an IPv6 range outside it: dropped and reported once', () => {
    const r = offer(['100.66.0.0/16', 'fd66::/48'], ['8.8.8.0/24', '100.66.0.0/15', '100.67.0.0/16', '2001:4860::/32', 'fd66::/47', '100.66.2.0/24']);
    expect(r.kept).toEqual(['100.66.2.0/24']);
    expect(r.refused).toHaveLength(1);
    for (const c of ['8.8.8.0/24', '100.66.0.0/15', '100.67.0.0/16', '2001:4860::/32', 'fd66::/47']) expect(r.refused[0]).toContain(`${c} is outside h's pinned relay CIDRs`);
  });

  it('a hub pinned before relay CIDRs existed relays nothing (fail closed), and says why', () => {
    const r = offer(undefined, ['100.66.1.0/24']);
    expect(r.kept).toEqual([]);
    expect(r.refused[0]).toMatch(/100\.66\.1\.0\/24 is not relayable: h's pin names no relay CIDRs \(connect again\)/);
  });

  it('width bounds: /8 and /16 (IPv6) are the widest relayed, even when the pin is wider', () => {
    expect(offer(['44.0.0.0/7', 'fd70::/15'], ['44.0.0.0/8', 'fd70::/16', '44.0.0.0/7', 'fd70::/15'])).toMatchObject({ kept: ['44.0.0.0/8', 'fd70::/16'] });
    expect(offer(['44.0.0.0/7'], ['44.0.0.0/7']).refused[0]).toMatch(/44\.0\.0\.0\/7 is wider than \/8/);
  });

  it('inside the pin, a range naming no host of its own is still dropped (defence in depth: Trust.pin does not decode)', () => {
    const r = offer(['168.63.0.0/16', '100.96.0.0/11', 'fd00:ec2::/120'], ['168.63.128.0/17', '168.63.129.16/32', '168.63.0.0/24', '100.100.100.0/24', '100.99.0.0/16', 'fd00:ec2::200/120']);
    expect(r.kept).toEqual(['168.63.0.0/24', '100.99.0.0/16']);
    expect(r.refused[0]).toMatch(/168\.63\.128\.0\/17 overlaps 168\.63\.129\.16\/32 \(Azure's host address/);
    expect(r.refused[0]).toMatch(/100\.100\.100\.0\/24 overlaps 100\.100\.100\.200\/32/);
    expect(r.refused[0]).toMatch(/fd00:ec2::200\/120 overlaps fd00:ec2::254\/128/);
  });

  it('translation prefixes (NAT64, 6to4, Teredo: RFC 6052, 8215, 3056, 4380) hold the IPv4 Internet: dropped even inside the pin', () => {
    const xlat = ['64:ff9b::/96', '64:ff9b:1::/48', '2002::/16', '2001::/32'];
    const r = offer([...xlat, 'fd66::/48'], ['64:ff9b::808:800/120', '64:ff9b:1:2::/64', '2002:808:808::/48', '2001:0:1::/48', 'fd66::/56']);
    expect(r.kept).toEqual(['fd66::/56']);
    for (const [c, x] of [['64:ff9b::808:800/120', '64:ff9b::/96'], ['64:ff9b:1:2::/64', '64:ff9b:1::/48'], ['2002:808:808::/48', '2002::/16'], ['2001:0:1::/48', '2001::/32']])
      expect(r.refused[0]).toContain(`${c} overlaps the translation prefix ${x}`);
  });

  it('containment is by whole prefix, bit-exact at non-byte boundaries (the non-allocating check)', () => {
    const pin = ['100.66.0.0/15', '44.128.0.0/9', 'fd66:8000::/17'];
    const r = offer(pin, ['100.67.255.0/24', '100.68.0.0/24', '44.255.0.0/16', '44.127.0.0/16', 'fd66:ffff::/32', 'fd66:7fff::/32', '100.66.0.0/15', '44.0.0.0/8']);
    expect(r.kept).toEqual(['100.67.255.0/24', '44.255.0.0/16', 'fd66:ffff::/32', '100.66.0.0/15']);
    for (const c of ['100.68.0.0/24', '44.127.0.0/16', 'fd66:7fff::/32', '44.0.0.0/8']) expect(r.refused[0]).toContain(c);
  });

  it('a changed relay pin is a changed pin (holds), so every relay offer is checked again', () => {
    const t = new Trust('c1', 1, ['100.65.0.0/16']);
    t.pin(hub(['100.66.0.0/16']));
    expect(t.holds(hub(['100.66.0.0/16']))).toBe(true);
    expect(t.holds(hub(['100.66.0.0/16', '100.67.0.0/16']))).toBe(false);
    expect(t.holds(hub())).toBe(false);
  });
});

describe('the relay pin as stored (codec) and chosen at connect', () => {
  const decode = (relayCIDRs: string[]) => tryDecode(pinnedClusterCodec, pinnedKey('h'), JSON.stringify(hub(relayCIDRs)));

  it('refuses ranges naming no host of their own, wide ones and too many; takes pod CIDRs (IPv4, IPv6) and none', () => {
    for (const bad of ['64:ff9b::/96', '64:ff9b:1::/48', '2002::/16', '2001::/32', '169.254.0.0/16', '169.254.169.253/32', '100.64.0.0/10', '127.0.0.0/8', '224.0.0.0/8', 'fe80::/64', 'ff02::/16', 'fd00:ec2::/32', '168.63.0.0/16', '0.0.0.0/0', '44.0.0.0/7', 'fd00::/15', 'x'])
      expect(decode(['100.66.0.0/16', bad]), bad).toMatchObject({ ok: false });
    expect(decode(Array.from({ length: 129 }, (_, i) => `44.${i}.0.0/16`))).toMatchObject({ ok: false });
    for (const good of [['100.66.0.0/16', 'fd66::/48'], [], Array.from({ length: 128 }, (_, i) => `fd66:${i.toString(16)}::/48`)]) expect(decode(good)).toMatchObject({ ok: true });
  });

  const cfg = (name: string, id: number, relay = false) => ({ name, id, podCIDRs: [`100.${64 + id}.0.0/16`], underlayCIDRs: [`198.18.${id}.0/24`], ...(relay ? { relay: true } : {}) });

  it('by default a spoke pins the pod CIDRs of the clusters behind the hub now, not its own, not a range relaypin refuses', () => {
    const hubPins = [pinFor(cfg('c2', 2), false), pinFor(cfg('c3', 3), false), pinFor({ ...cfg('c4', 4), podCIDRs: ['100.64.0.0/10'] }, false)];
    expect(relayCIDRsFor('c2', cfg('h', 9, true), hubPins)).toMatchObject({ cidrs: ['100.67.0.0/16'] });
    expect(pinFor(cfg('h', 9, true), false, ['100.67.0.0/16'])).toMatchObject({ relay: true, relayCIDRs: ['100.67.0.0/16'] });
    expect(pinFor(cfg('h', 9, true), false)).toMatchObject({ relay: true, relayCIDRs: [] }); // no clusters behind it: nothing
    expect(pinFor(cfg('c3', 3), false, ['100.67.0.0/16'])).not.toHaveProperty('relayCIDRs'); // no hub
  });

  it("the default takes only shared/private space from the hub's etcd: a fake pin's public and translation ranges are skipped, each said", () => {
    const ghost = pinFor({ ...cfg('ghost', 7), podCIDRs: ['8.0.0.0/8', '1.0.0.0/8', '64:ff9b::/96', '2002::/16', '100.71.0.0/16', 'fd71::/48'] }, false);
    const honest = pinFor({ ...cfg('c3', 3), podCIDRs: ['100.73.0.0/16', '100.74.3.0/24', '100.75.3.0/24', 'fc00:3::/48'] }, false);
    const r = relayCIDRsFor('c2', cfg('h', 9, true), [ghost, honest]);
    expect(r.cidrs).toEqual(['100.71.0.0/16', 'fd71::/48', '100.73.0.0/16', '100.74.3.0/24', '100.75.3.0/24', 'fc00:3::/48']);
    expect(r.skipped).toHaveLength(4);
    for (const [i, c] of ['8.0.0.0/8', '1.0.0.0/8', '64:ff9b::/96', '2002::/16'].entries()) {
      expect(r.skipped[i]).toContain(`relay ${c} (h's pin of ghost): ${c} is outside shared/private address space`);
      expect(r.skipped[i]).toContain('--a-relay-cidrs/--b-relay-cidrs');
    }
    // inside private space, relaypin's own refusals still apply (a range holding a platform address)
    expect(relayCIDRsFor('c2', cfg('h', 9, true), [pinFor({ ...cfg('c4', 4), podCIDRs: ['100.100.0.0/16'] }, false)]).skipped[0]).toMatch(/overlaps 100\.100\.100\.200\/32/);
    // a remote that is no hub relays nothing: connect warns of nothing for it, whatever its pins hold
    expect(relayCIDRsFor('c2', cfg('h', 9), [ghost, honest])).toEqual({ cidrs: [], skipped: [] });
  });

  it('an explicit list replaces the default (canonical text); one the codec would refuse, or one for a non-hub, throws WM_RELAY_CIDR_INVALID', () => {
    expect(relayCIDRsFor('c2', cfg('h', 9, true), [], ['100.70.0.0/16', 'fd70::/48', '100.71.3.4/16', 'FD72:0::/48'])).toEqual({ cidrs: ['100.70.0.0/16', 'fd70::/48', '100.71.0.0/16', 'fd72::/48'], skipped: [] });
    for (const [remote, list] of [[cfg('h', 9, true), ['169.254.169.254/32']], [cfg('h', 9, true), ['8.0.0.0/6']], [cfg('h', 9, true), ['nope']], [cfg('c3', 3), ['100.70.0.0/16']], [cfg('h', 9, true), ['64:ff9b::/96']], [cfg('h', 9, true), ['2002:808::/32']], [cfg('h', 9, true), ['2001::/32']]] as const) {
      const err = (() => { try { relayCIDRsFor('c2', remote, [], [...list]); } catch (e) { return e; } })();
      expect(err, list.join()).toBeInstanceOf(MeshError);
      expect((err as MeshError).code).toBe('WM_RELAY_CIDR_INVALID');
    }
  });
});

describe('notAHost: per-host platform addresses (documented by each cloud)', () => {
  it("Azure's 168.63.129.16, AWS's fd00:ec2::254/253/123, GCP's and AWS's 169.254.169.254/253/123 name no host; neighbours do", () => {
    for (const a of ['168.63.129.16', 'fd00:ec2::254', 'fd00:ec2::253', 'fd00:ec2::123', '169.254.169.254', '169.254.169.253', '169.254.169.123', '100.100.100.200', '192.0.0.192'])
      expect(notAHost(parseIP(a)!), a).toBeDefined();
    for (const a of ['168.63.129.15', '168.63.129.17', 'fd00:ec2::252', '100.100.100.201', '192.0.0.193']) expect(notAHost(parseIP(a)!), a).toBeUndefined();
  });

  it('prefixCovers agrees with prefixContains on the inner first address at every length (IPv4 and IPv6)', () => {
    const pick = (bytes: number, seed: number) => Buffer.from(Array.from({ length: bytes }, (_, i) => (seed * 73 + i * 151) & (i % 3 ? 0xff : 0xf0)));
    for (const bytes of [4, 16])
      for (let o = 0; o <= bytes * 8; o += 3)
        for (let i = 0; i <= bytes * 8; i += 5) {
          const outer = { addr: maskPrefix(pick(bytes, o), o), cidr: o };
          const inner = { addr: maskPrefix(i % 2 ? pick(bytes, o) : pick(bytes, i), i), cidr: i };
          expect(prefixCovers(outer, inner), `${formatPrefix(outer)} ${formatPrefix(inner)}`).toBe(o <= i && prefixContains(outer, inner.addr));
        }
    expect(prefixCovers(parsePrefix('100.64.0.0/10'), parsePrefix('fc00::/7'))).toBe(false);
  });

  it('notAHostIn: a prefix holding such an address, or inside such a range, overlaps; an address family never crosses', () => {
    expect(notAHostIn(parsePrefix('168.63.128.0/17'))).toMatch(/168\.63\.129\.16\/32/);
    expect(notAHostIn(parsePrefix('169.254.169.254/32'))).toMatch(/169\.254\.0\.0\/16 \(link-local\)/);
    expect(notAHostIn(parsePrefix('fd00:ec2::/64'))).toMatch(/fd00:ec2::/);
    expect(notAHostIn(parsePrefix('168.63.130.0/24'))).toBeUndefined();
    expect(notAHostIn(parsePrefix('fd00:ec3::/32'))).toBeUndefined();
    expect(notAHostIn(parsePrefix('100.99.0.0/16'))).toBeUndefined();
  });
});
