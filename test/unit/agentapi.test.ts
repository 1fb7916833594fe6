// The agent's local API (src/agent/api.ts) over a UNIX socket in a temp dir, spoken to with the
// client (src/agent/client.ts), with a fake agent behind it: its local endpoints are a real
// Registration (src/agent/registration.ts) on the shipped MemKV, so what the API accepts reaches
// the store. No root, no etcd, no device.
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endpointName, stateKey } from '../../src/controlplane/keys.js';
import { MemKV } from '../../src/controlplane/memkv.js';
import type { EndpointRecord } from '../../src/controlplane/records/index.js';
import { silentLogger } from '../../src/log.js';
import type { Agent } from '../../src/agent/agent.js';
import { serveApi } from '../../src/agent/api.js';
import { agentRequest, callAgent } from '../../src/agent/client.js';
import { AgentMetrics, type MetricsSnapshot } from '../../src/agent/metrics.js';
import { loadOrCreateKey, Registration } from '../../src/agent/registration.js';
import type { AgentStatus } from '../../src/agent/status.js';
import type { ServiceStatus } from '../../src/services/datapath.js';

const dir = mkdtempSync(join(tmpdir(), 'wmapi-'));
const sock = join(dir, 'run', 'agent.sock');
const mem = new MemKV();
const others = new Map<string, EndpointRecord>();
let server: Server;

const status: AgentStatus = {
  cluster: 'c1',
  clusterId: 1,
  node: 'n1',
  listenPort: 51820,
  etcdConnected: true,
  syncedClusters: ['c2'],
  handshakes: { initiated: 1, completed: 1, rejected: 0, crossed: 0 },
  endpoints: 0,
  localEndpoints: 0,
  registration: { state: 'registered', pendingEndpoints: 0, failures: 0 },
  peers: [{ id: 'c2/m1', cluster: 'c2', podCIDRs: ['100.66.1.0/24'], lastHandshakeAgeS: 3, rxBytes: 10, txBytes: 20, rxPackets: 1, txPackets: 2 }],
  counters: { rx_packets: 5 },
  rejections: { total: 0, recent: [] },
  pinnedClusters: [],
};
const services: ServiceStatus[] = [{ namespace: 'shop', name: 'web', vip: '100.127.0.10', global: true, shared: true, affinity: 'none', clusters: [{ cluster: 'c1', exported: true }], ports: [] }];

beforeAll(async () => {
  const keyFile = join(dir, 'key');
  loadOrCreateKey(keyFile);
  const reg = new Registration(
    {
      cfg: { cluster: { name: 'c1', id: 1 }, node: { name: 'n1', addresses: ['198.18.1.1'], podCIDRs: ['100.65.1.0/24'] }, leaseTTL: 10, wireguard: { privateKeyFile: keyFile } },
      store: {
        list: (p) => mem.list(p),
        delete: async (k) => void (await mem.delete(k)),
        lease: () => ({ put: async (k, v) => void (await mem.put(k, v)), grant: async () => '1', onLost: () => undefined, release: () => undefined }),
      },
      endpointsAt: (ip) => [...others.values()].filter((r) => r.ip === ip),
      rejections: { add: () => undefined },
      log: silentLogger,
    },
    { cluster: 'c1', clusterId: 1, name: 'n1', addresses: ['198.18.1.1'], port: 51820, publicKey: Buffer.alloc(32, 1).toString('base64'), podCIDRs: ['100.65.1.0/24'], bootId: '1' },
  );
  await reg.register();
  const snapshot = (): MetricsSnapshot => ({ peers: status.peers, counters: status.counters, handshakes: status.handshakes, services, etcdConnected: true, syncedClusters: ['c2'], syncLag: new Map(), remotes: [], rejections: [] });
  // the part of Agent the API reads (api.ts takes the agent as it is)
  const fake = {
    cfg: { cluster: { name: 'c1' }, node: { name: 'n1' } },
    datapath: undefined,
    proxy: undefined,
    services: { list: () => services },
    metrics: new AgentMetrics({ cluster: 'c1', node: 'n1' }, snapshot),
    status: () => ({ ...status, localEndpoints: reg.localEndpoints().length }),
    localEndpoints: () => reg.localEndpoints(),
    addEndpoint: reg.addEndpoint.bind(reg),
    updateEndpoint: reg.updateEndpoint.bind(reg),
    removeEndpoint: reg.removeEndpoint.bind(reg),
  } as unknown as Agent;
  server = await serveApi(fake, sock);
});

afterAll(() => {
  server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('agent API', () => {
  it('listens on a socket only its owner can use', () => {
    expect(statSync(sock).isSocket()).toBe(true);
    expect(statSync(sock).mode & 0o077).toBe(0);
  });

  it('GET /v1/status, /v1/services and /metrics answer from the agent', async () => {
    expect(await callAgent(sock, 'GET', '/v1/status')).toEqual({ status: 200, body: { ...status } });
    expect(await callAgent(sock, 'GET', '/v1/services')).toEqual({ status: 200, body: { cluster: 'c1', node: 'n1', services } });
    const m = await agentRequest(sock, 'GET', '/metrics');
    expect(m.status).toBe(200);
    expect(m.text).toMatch(/wiremesh_peer_bytes_total\{peer="c2\/m1",peer_cluster="c2",direction="rx",cluster="c1",node="n1"\} 10/);
  });

  it('POST /v1/endpoints registers an endpoint (201), lists it, refuses bad bodies (400 with the field) and held addresses (409)', async () => {
    const ep = { name: 'web', namespace: 'shop', labels: { app: 'web' }, ips: ['100.65.1.10'], ports: [{ name: 'http', containerPort: 8080 }] };
    const created = await callAgent(sock, 'POST', '/v1/endpoints', ep);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: 'web', ips: ['100.65.1.10'] });
    expect(JSON.parse(mem.get(stateKey('ip', 'c1', endpointName('n1', '100.65.1.10')))!.value)).toMatchObject({ name: 'web', namespace: 'shop', ports: [{ name: 'http', containerPort: 8080 }] });
    expect((await callAgent(sock, 'GET', '/v1/endpoints')).body).toEqual([created.body]);
    expect(((await callAgent(sock, 'GET', '/v1/status')).body as AgentStatus).localEndpoints).toBe(1);

    expect(await callAgent(sock, 'POST', '/v1/endpoints', { ...ep, name: 'Bad_Name' })).toMatchObject({ status: 400, body: { field: 'name' } });
    expect(await callAgent(sock, 'POST', '/v1/endpoints', { ...ep, ips: ['100.66.0.1'] })).toMatchObject({ status: 400, body: { field: 'ips[0]' } });
    const notJson = await agentRequest(sock, 'POST', '/v1/endpoints');
    expect(notJson.status).toBe(400);
    const held = await callAgent(sock, 'POST', '/v1/endpoints', { ...ep, name: 'api' });
    expect(held).toMatchObject({ status: 409, body: { holders: [{ ip: '100.65.1.10', cluster: 'c1', node: 'n1', endpoint: 'shop/web' }] } });
    others.set('x', { ip: '100.65.1.20', cluster: 'c1', node: 'n2', namespace: 'shop', name: 'old', labels: {} });
    expect((await callAgent(sock, 'POST', '/v1/endpoints', { ...ep, name: 'api', ips: ['100.65.1.20'] })).status).toBe(409);
    expect((await callAgent(sock, 'POST', '/v1/endpoints', { ...ep, name: 'api', ips: ['100.65.1.20'], replace: true })).status).toBe(201);
  });

  it('PATCH changes labels; DELETE removes (404 for an unknown endpoint)', async () => {
    const patched = await callAgent(sock, 'PATCH', '/v1/endpoints/shop/web', { labels: { tier: 'front' } });
    expect(patched).toMatchObject({ status: 200, body: { endpoint: { labels: { app: 'web', tier: 'front' } }, warnings: [] } });
    expect(await callAgent(sock, 'DELETE', '/v1/endpoints/shop/web')).toEqual({ status: 200, body: { deleted: 'shop/web' } });
    expect(mem.get(stateKey('ip', 'c1', endpointName('n1', '100.65.1.10')))).toBeUndefined();
    expect((await callAgent(sock, 'DELETE', '/v1/endpoints/shop/web')).status).toBe(404);
  });

  it('policy and flows are 404 with policy off; unknown routes are 404', async () => {
    expect(await callAgent(sock, 'GET', '/v1/policy')).toMatchObject({ status: 404, body: { error: expect.stringMatching(/policy is disabled/) } });
    expect((await callAgent(sock, 'GET', '/v1/flows')).status).toBe(404);
    expect(await callAgent(sock, 'GET', '/v1/nope')).toMatchObject({ status: 404, body: { error: 'no route for GET /v1/nope' } });
  });
});
