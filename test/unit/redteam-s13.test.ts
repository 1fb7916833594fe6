/**
 * Red-team findings of s13 (2026-12-02) against main 6f1d110: each case asserts what docs/security.md promises
 * and is marked `it.fails` because main does not hold it yet (the case fails as written; vitest counts that as a
 * pass). Drop `.fails` with the fix.
 */
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Trust, WAIT } from '../../src/controlplane/records/index.js';
import { METRICS_LIMITS, serveMetrics, type MetricsServer } from '../../src/net/metricsserver.js';

const open: Array<MetricsServer | Socket> = [];
afterEach(() => {
  for (const o of open.splice(0)) (o as Socket).destroy?.() ?? (o as MetricsServer).close();
});

/** The status line of one GET /metrics on a new raw connection from `from`, or the error's code (reset). */
function scrape(port: number, from: string): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => s.end('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'));
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
    s.on('close', () => resolve(got.split('\r\n')[0]!));
  });
}

describe('red team s13', () => {
  const trust = () => {
    const t = new Trust('c1', 1, ['100.65.0.0/16']);
    t.setLocalUnderlay(['198.18.1.0/24']);
    t.pin({ name: 'c3', id: 3, podCIDRs: ['100.67.0.0/16'], underlayCIDRs: ['198.18.3.0/24'], relay: true, acceptPolicies: true });
    return t;
  };

  // Trust.relay (records/trust.ts:193-206) drops only CIDRs of a known cluster, wide ones and those holding a node
  // address; it never asks notAHost. A hub's offer becomes host routes into the TUN (peers.ts:301, routetable.ts),
  // so the node's own requests to its cloud's metadata service / VPC resolver go into the hub's tunnel.
  it("relay: a hub's CIDRs naming no host of their own (metadata, link-local, loopback, multicast) are dropped", () => {
    const offer = ['169.254.169.254/32', '169.254.169.253/32', '169.254.0.0/16', '100.100.100.200/32', '192.0.0.192/32', 'fd00:ec2::254/128', '127.0.0.0/8', '224.0.0.0/8', 'fe80::/64', '100.99.0.0/16'];
    const t = trust(); // s13relay: a hub relays only inside what its pin allows; here all of the offer, so notAHost alone drops
    t.pin({ name: 'c3', id: 3, podCIDRs: ['100.67.0.0/16'], underlayCIDRs: ['198.18.3.0/24'], relay: true, relayCIDRs: offer, acceptPolicies: true });
    const r = t.relay('c3', { cluster: 'c3', node: 'n1', podCIDRs: offer });
    expect(r).toMatchObject({ record: { cluster: 'c3', node: 'n1', podCIDRs: ['100.99.0.0/16'], clusterIds: [] } });
  });

  // metricsserver.ts:25-27 says "a connection that sent its head is answered from the cache and closed at once, so
  // only silent ones can fill the listener, and those cannot keep a scraper out". Not when the exposition is larger
  // than what the kernel buffers take: answer() (metricsserver.ts:81) ends the socket and waits for the flush, so a
  // client that sends its head and then does not read (or reads an MSS every < requestTimeoutMs: the socket timeout
  // is reset by every write that progresses) keeps a live, non-silent slot; room() (:113-122) evicts only silent ones.
  // 16 clients (IPv4 addresses; or IPv6 /64s: free on the Internet, and one /64 is *every pod of a node*) x 4 hold all
  // 64 and scrapers are reset ('connection-bound'). Here 2 x 4 of 8. Each held slot also pins its own Buffer copy of
  // the exposition (Buffer.from(body) per answer).
  it('metrics listener: clients that send GET /metrics and do not read the answer cannot lock a scraper out', async () => {
    const big = 'x'.repeat(32 << 20); // an exposition larger than the loopback socket buffers (real ones: > ~100 KB with a small client window)
    const source = { contentType: 'text/plain', text: async () => big };
    const server = await serveMetrics(source, '127.0.0.1', 0, { ...METRICS_LIMITS, maxConnections: 8, maxPerClient: 4, requestTimeoutMs: 60_000 });
    open.push(server);
    const port = (server.address() as AddressInfo).port;
    const holders = ['127.0.0.2', '127.0.0.3'].flatMap((from) => Array.from({ length: 4 }, () => from));
    await Promise.all(
      holders.map(
        (from) =>
          new Promise<void>((resolve) => {
            const s = connect({ port, host: '127.0.0.1', localAddress: from }, () => s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'));
            open.push(s);
            s.on('error', () => undefined);
            s.once('data', () => {
              s.pause(); // reads no more: the answer stays in flight
              resolve();
            });
          }),
      ),
    );
    expect(server.listenerStats.refused).toMatchObject({ evicted: 0 });
    expect(await scrape(port, '127.0.0.4')).toBe('HTTP/1.1 200 OK'); // main: 'ECONNRESET' (refused: connection-bound)
  });

  // notAHost (net/ip.ts:131-153) lists the metadata services each node's own host answers outside link-local (AWS
  // IPv6, Alibaba, Oracle) but not Azure's 168.63.129.16 (the platform's DNS resolver, DHCP and wire server, answered
  // by every VM's host). A cluster pinned with a range holding it (168.63.0.0/16 passes underlayCIDRError) names it
  // as a node address and is admitted; with finding 1 a hub can relay 168.63.129.16/32 as well.
  it("node: Azure's per-host platform address 168.63.129.16 is refused like the other clouds' metadata addresses", () => {
    const t = trust();
    t.pin({ name: 'c2', id: 2, podCIDRs: ['100.66.0.0/16'], underlayCIDRs: ['168.63.0.0/16'], relay: false, acceptPolicies: false });
    const KEY = Buffer.alloc(32, 7).toString('base64');
    const rec = { cluster: 'c2', clusterId: 2, name: 'n1', addresses: ['168.63.129.16'], port: 51820, publicKey: KEY, podCIDRs: ['100.66.1.0/24'], bootId: '1' };
    expect(t.node('c2', rec)).toMatch(/no node's own/);
  });

  // The agent's Trust starts with no local pod CIDRs and underlay 'unknown' (agent.ts:106) and learns them only from
  // the cluster-config watch (sinks.ts:168-169); agent.ts:218 starts the state watches after that watch's first list
  // OR 5 s, whichever comes first. Until the config is read (a slow first list; or no cluster-config at all) Trust.node
  // admits a local node record with any pod CIDRs (insideCluster returns undefined on empty, trust.ts:226) and any
  // underlay address (underlayOwner skips 'unknown', trust.ts:218): a compromised node of ours gets routes for
  // 8.8.8.0/24 and a peer endpoint outside our underlay in every agent. gateway-dns returns 'wait' here instead
  // (nodepins.ts:48), and a config without underlayCIDRs refuses everything: a missing one should not trust more.
  it('node: before the local cluster-config is read, a local node record waits (is not admitted unchecked)', () => {
    const t = new Trust('c1', 1); // as agent.ts:106 builds it
    const KEY = Buffer.alloc(32, 9).toString('base64');
    const rec = { cluster: 'c1', clusterId: 1, name: 'evil', addresses: ['203.0.113.5'], port: 51820, publicKey: KEY, podCIDRs: ['8.8.8.0/24'], bootId: '1' };
    expect(t.node('c1', rec)).toBe(WAIT); // main: undefined (admitted); not a refusal either: it waits for the config
  });
});
