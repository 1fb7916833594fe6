/**
 * The agent's node.yaml. Every error names the field and the reason.
 *
 *   cluster: { name: c1, id: 1 }       # maxConnectedClusters: 511 when the mesh is (ids 1..511; default 255)
 *   node:
 *     name: n1
 *     addresses: [198.18.1.10]          # underlay; IPv4 and/or IPv6
 *     podCIDRs: [100.65.1.0/24]         # this node's pods (dual stack: add an IPv6 prefix)
 *   wireguard: { interface: wm0, port: 51820, privateKeyFile: /var/lib/wiremesh/key, mtu: 1412 }
 *   etcd: { endpoints: [http://198.18.1.2:2379], caFile, certFile, keyFile }
 *   api: { socket: /run/wiremesh/agent.sock }
 *   policy: { enabled: true, defaultLocalCluster: true, proxyPort: 15001, proxyWorkers: 1 }   # the L7 proxy: port on the router address, threads
 *     conntrack: { maxEntries: 500000, perEndpoint: 65536, natPerEndpoint: 65536 }   # policy conntrack bounds (docs/architecture.md); NAT gets maxEntries too, natPerEndpoint per client (5 MB)
 *     hostFirewall: true                  # peers' packets to this node / to no pod: only from remote-node, or replies
 *   services: { maglevTableSize: 16381, maxBackendsPerCluster: 4095, dns: { enabled: true, address: 169.254.1.1, port: 53 } }   # a cluster's healthy backends in one port's table: ≤ M, default min(4096, ⌊M/4⌋) (services/tables.ts)
 *   gateway:                            # optional: ingress gateway for global services (src/gateway)
 *     address: 198.18.1.10              # default: node.addresses[0]
 *     region: eu                        # reported to the gateway DNS entry point
 *     listeners: [{ service: shop/web, port: 80, listenPort: 8080, proxyProtocol: false }]
 *   metrics: { address: 198.18.1.10, port: 9962 }   # optional: Prometheus endpoint (GET /metrics is on the API socket anyway)
 *   admission: { maxEndpointsPerNode: 1024 }   # endpoints admitted per node of any cluster; more wait (docs/security.md)
 *
 * Services ride on the mesh data path: with policy.enabled false there is no
 * service translation (and no DNS).
 *
 * The MTU default is 1412: 1420 (WireGuard's, which fits an IPv6 underlay of
 * 1500) less the 8-byte identity tag mesh peers carry.
 */
import { ConfigError } from '../errors.js';
import { maxBackendsPerClusterDefault } from '../services/tables.js';
import { parseYamlMapping, readConfigFile } from '../yamlconfig.js';
import { bool, etcdEndpoint, fail, int, metricsListen, obj, onlyFields, str, strList, validateAddress, validateClusterId, validateClusterName, validatePrefixes, type Obj } from '../validate.js';
import { formatPrefix } from '../net/ip.js';
import { DEFAULT_MAX_ENDPOINTS_PER_NODE } from './endpointquota.js';

export interface AgentConfig {
  /** maxConnectedClusters: the mesh's cluster-id layout (identity.ts); must equal the cluster-config's. */
  cluster: { name: string; id: number; maxConnectedClusters?: 255 | 511 };
  node: { name: string; addresses: string[]; podCIDRs: string[] };
  wireguard: { interface: string; port: number; privateKeyFile: string; mtu: number };
  etcd: { endpoints: string[]; caFile?: string; certFile?: string; keyFile?: string };
  api: { socket: string };
  /** enabled: identity tagging and policy enforcement; defaultLocalCluster: Cilium's policy-default-local-cluster. */
  policy: { enabled: boolean; defaultLocalCluster: boolean; proxyPort: number; proxyWorkers: number; conntrack: { maxEntries: number; perEndpoint: number; natPerEndpoint: number }; hostFirewall: boolean };
  /** maglevTableSize: prime M of every service's table; maxBackendsPerCluster: a cluster's healthy backends in one port's table; dns: the node's service-name server. */
  services: { maglevTableSize: number; maxBackendsPerCluster: number; dns: { enabled: boolean; address: string; port: number } };
  gateway?: { address: string; region?: string; listeners: Array<{ service: string; port: number; listenPort: number; proxyProtocol: boolean }> };
  metrics?: { address: string; port: number };
  /** maxEndpointsPerNode: endpoints admitted per node (any cluster's), the others held back (endpointquota.ts). */
  admission?: { maxEndpointsPerNode: number };
  /** Node record lease, seconds: how long a dead agent's node stays published. */
  leaseTTL: number;
}

export function parseAgentConfig(text: string): AgentConfig {
  const root = parseYamlMapping(text, ['cluster', 'node', 'wireguard', 'etcd', 'api', 'leaseTTL', 'policy', 'services', 'gateway', 'metrics', 'admission']);
  const c = obj(root.cluster, 'cluster');
  const n = obj(root.node, 'node');
  const w = obj(root.wireguard ?? {}, 'wireguard');
  const e = obj(root.etcd, 'etcd');
  const a = obj(root.api ?? {}, 'api');
  const pol = obj(root.policy ?? {}, 'policy');
  onlyFields(pol, 'policy', ['enabled', 'defaultLocalCluster', 'proxyPort', 'proxyWorkers', 'conntrack', 'hostFirewall']);
  const ct = obj(pol.conntrack ?? {}, 'policy.conntrack');
  onlyFields(ct, 'policy.conntrack', ['maxEntries', 'perEndpoint', 'natPerEndpoint']);
  const ctMax = int(ct.maxEntries, 'policy.conntrack.maxEntries', 1024, 1 << 24, 500_000);
  const svc = obj(root.services ?? {}, 'services');
  onlyFields(svc, 'services', ['maglevTableSize', 'maxBackendsPerCluster', 'dns']);
  const dns = obj(svc.dns ?? {}, 'services.dns');
  onlyFields(dns, 'services.dns', ['enabled', 'address', 'port']);
  const maglevTableSize = int(svc.maglevTableSize, 'services.maglevTableSize', 251, 1048573, 16381);
  if (!isPrime(maglevTableSize)) throw new ConfigError('services.maglevTableSize', `${maglevTableSize} is not prime (Maglev needs a prime: 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071)`);
  const adm = obj(root.admission ?? {}, 'admission');
  onlyFields(adm, 'admission', ['maxEndpointsPerNode']);
  const gw = root.gateway === undefined ? undefined : obj(root.gateway, 'gateway');
  if (gw) onlyFields(gw, 'gateway', ['address', 'region', 'listeners']);
  const nodeName = str(n.name, 'node.name');
  if (!/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/.test(nodeName)) throw new ConfigError('node.name', `"${nodeName}" must be a DNS label`);
  const addresses = strList(n.addresses, 'node.addresses');
  addresses.forEach((x, i) => validateAddress(x, `node.addresses[${i}]`));
  const podCIDRs = validatePrefixes(n.podCIDRs, 'node.podCIDRs').map(formatPrefix);
  const iface = w.interface === undefined ? 'wm0' : str(w.interface, 'wireguard.interface');
  if (iface.length > 15) throw new ConfigError('wireguard.interface', 'at most 15 characters');
  const endpoints = strList(e.endpoints, 'etcd.endpoints').map((u, i) => etcdEndpoint(u, `etcd.endpoints[${i}]`));
  const tls = (k: string) => (e[k] === undefined ? undefined : str(e[k], `etcd.${k}`));
  return {
    cluster: clusterSection(c),
    node: { name: nodeName, addresses, podCIDRs },
    wireguard: {
      interface: iface,
      port: int(w.port, 'wireguard.port', 1, 65535, 51820),
      privateKeyFile: w.privateKeyFile === undefined ? `/var/lib/wiremesh/${nodeName}.key` : str(w.privateKeyFile, 'wireguard.privateKeyFile'),
      mtu: int(w.mtu, 'wireguard.mtu', 1280, 65000, 1412),
    },
    etcd: { endpoints, caFile: tls('caFile'), certFile: tls('certFile'), keyFile: tls('keyFile') },
    api: { socket: a.socket === undefined ? `/run/wiremesh/${nodeName}.sock` : str(a.socket, 'api.socket') },
    leaseTTL: int(root.leaseTTL, 'leaseTTL', 5, 3600, 30),
    admission: { maxEndpointsPerNode: int(adm.maxEndpointsPerNode, 'admission.maxEndpointsPerNode', 1, 1 << 20, DEFAULT_MAX_ENDPOINTS_PER_NODE) },
    policy: { enabled: bool(pol.enabled, 'policy.enabled', true), defaultLocalCluster: bool(pol.defaultLocalCluster, 'policy.defaultLocalCluster', true), proxyPort: int(pol.proxyPort, 'policy.proxyPort', 1, 65535, 15001), proxyWorkers: int(pol.proxyWorkers, 'policy.proxyWorkers', 1, 16, 1), conntrack: { maxEntries: ctMax, perEndpoint: int(ct.perEndpoint, 'policy.conntrack.perEndpoint', 1, ctMax, Math.min(65_536, ctMax)), natPerEndpoint: int(ct.natPerEndpoint, 'policy.conntrack.natPerEndpoint', 2, ctMax, Math.min(65_536, ctMax)) }, hostFirewall: bool(pol.hostFirewall, 'policy.hostFirewall', true) },
    ...(gw ? { gateway: parseGateway(gw, addresses[0]!) } : {}),
    ...(root.metrics !== undefined ? { metrics: metricsListen(obj(root.metrics, 'metrics'), 'the node\'s underlay address') } : {}),
    services: {
      maglevTableSize,
      // more than M could not give each backend a slot; the default leaves ≥ 4 each (services/tables.ts)
      maxBackendsPerCluster: int(svc.maxBackendsPerCluster, 'services.maxBackendsPerCluster', 1, maglevTableSize, maxBackendsPerClusterDefault(maglevTableSize)),
      dns: {
        enabled: bool(dns.enabled, 'services.dns.enabled', true),
        address: dns.address === undefined ? '169.254.1.1' : validateAddress(dns.address, 'services.dns.address'),
        port: int(dns.port, 'services.dns.port', 1, 65535, 53),
      },
    },
  };
}

function parseGateway(gw: Obj, nodeAddress: string): NonNullable<AgentConfig['gateway']> {
  const listeners = (Array.isArray(gw.listeners) ? gw.listeners : []).map((l: unknown, i: number) => {
    const f = `gateway.listeners[${i}]`;
    const o = obj(l, f);
    onlyFields(o, f, ['service', 'port', 'listenPort', 'proxyProtocol']);
    const service = str(o.service, `${f}.service`);
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?\/[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(service)) throw new ConfigError(`${f}.service`, `"${service}" must be namespace/name`);
    return { service, port: int(o.port, `${f}.port`, 1, 65535), listenPort: int(o.listenPort, `${f}.listenPort`, 1, 65535), proxyProtocol: bool(o.proxyProtocol, `${f}.proxyProtocol`, false) };
  });
  if (listeners.length === 0) throw new ConfigError('gateway.listeners', 'at least one listener is required');
  const ports = new Set<number>();
  listeners.forEach((l, i) => {
    if (ports.has(l.listenPort)) throw new ConfigError(`gateway.listeners[${i}].listenPort`, `${l.listenPort} is used twice`);
    ports.add(l.listenPort);
  });
  const region = gw.region === undefined ? undefined : str(gw.region, 'gateway.region');
  return { address: gw.address === undefined ? nodeAddress : validateAddress(gw.address, 'gateway.address'), ...(region ? { region } : {}), listeners };
}

function isPrime(n: number): boolean {
  for (let d = 2; d * d <= n; d++) if (n % d === 0) return false;
  return n > 1;
}

export function loadAgentConfig(path: string): AgentConfig {
  return parseAgentConfig(readConfigFile(path));
}

function clusterSection(c: Obj): AgentConfig['cluster'] {
  onlyFields(c, 'cluster', ['name', 'id', 'maxConnectedClusters']);
  const max = c.maxConnectedClusters ?? 255;
  if (max !== 255 && max !== 511) fail('cluster.maxConnectedClusters', `${String(max)} must be 255 or 511`);
  return { name: validateClusterName(c.name), id: validateClusterId(c.id, 'cluster.id', max), maxConnectedClusters: max };
}
