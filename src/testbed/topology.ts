/**
 * The testbed topology file (YAML), documented in docs/testbed.md.
 *
 *   name: demo                        # optional; namespaces are wmtb-<name>-...
 *   clusters:
 *     - { name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1, n2] }
 *   pods:
 *     - { name: web, cluster: c1, node: n1, namespace: default, labels: { app: web },
 *         ports: [{ name: serve-80-tcp, containerPort: 80, protocol: TCP }] }   # optional named ports
 *   manifests: { c1: [policy.yaml] }  # applied with `wiremesh apply` (issue 3/4)
 *   connect: [[c1, c2]]               # optional; default: full mesh
 *   hub: c1                           # optional: hub-and-spoke, spokes reach each other through c1
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { parseYamlMapping } from '../yamlconfig.js';
import { ConfigError } from '../errors.js';
import { formatIP, parsePrefix } from '../net/ip.js';
import { prefixesOverlap } from '../controlplane/types.js';
import { cidr, isObj, list, nonEmptyList, obj, oneOf, validateClusterId, validateClusterName } from '../validate.js';
import { parseContainerPorts, type ContainerPort } from '../policy/ports.js';
// names as Kubernetes has them (63); kernel names made from them are shortened where they are built (ifname.ts)
import { DNS_LABEL_RE as DNS } from '../controlplane/records/fields.js';

export interface ClusterSpec {
  name: string;
  id: number;
  podCIDR: string;
  /** Optional IPv6 pod prefix (a /48): dual stack, a /64 per node. */
  podCIDRv6?: string;
  nodes: string[];
}

export interface PodSpec {
  name: string;
  cluster: string;
  node: string;
  namespace: string;
  labels: Record<string, string>;
  /** Named container ports (for rules that name ports). */
  ports?: ContainerPort[];
}

export interface Topology {
  name: string;
  file: string;
  clusters: ClusterSpec[];
  pods: PodSpec[];
  manifests: Record<string, string[]>;
  connect: Array<[string, string]>;
  /** Hub-and-spoke: this cluster relays between the others. */
  hub?: string;
}

export function parseTopology(text: string, file = 'topology.yaml'): Topology {
  const doc = parseYamlMapping(text, ['name', 'clusters', 'pods', 'manifests', 'connect', 'hub']);
  const name = doc.name === undefined ? basename(file).replace(/\.[^.]*$/, '').toLowerCase().replace(/[^a-z0-9-]/g, '-').slice(0, 12) : doc.name;
  if (typeof name !== 'string' || !/^[a-z0-9][a-z0-9-]{0,11}$/.test(name)) throw new ConfigError('name', 'must be 1-12 lowercase letters, digits or "-"');
  const clusters: ClusterSpec[] = nonEmptyList(doc.clusters, 'clusters').map((item, i) => {
    const f = `clusters[${i}]`;
    const c = obj(item, f);
    const cname = validateClusterName(c.name, `${f}.name`);
    const id = validateClusterId(c.id, `${f}.id`);
    const p = cidr(c.podCIDR, `${f}.podCIDR`, 'must be a CIDR like 100.65.0.0/16', false);
    if (p.addr.length !== 4 || p.cidr > 22) throw new ConfigError(`${f}.podCIDR`, 'must be an IPv4 prefix of /22 or shorter (each node gets a /24)');
    let podCIDRv6: string | undefined;
    if (c.podCIDRv6 !== undefined) {
      const p6 = cidr(c.podCIDRv6, `${f}.podCIDRv6`, 'must be an IPv6 /48 like fd65::/48', false);
      if (p6.addr.length !== 16 || p6.cidr !== 48) throw new ConfigError(`${f}.podCIDRv6`, 'must be an IPv6 /48 (each node gets a /64)');
      podCIDRv6 = `${formatIP(p6.addr)}/48`;
    }
    const nodes = nonEmptyList(c.nodes, `${f}.nodes`, 'must be a non-empty list of node names').map((n, j) => {
      if (typeof n !== 'string' || !DNS.test(n)) throw new ConfigError(`${f}.nodes[${j}]`, 'must be a DNS label (at most 63 characters)');
      return n;
    });
    if (new Set(nodes).size !== nodes.length) throw new ConfigError(`${f}.nodes`, 'node names must be unique');
    if (nodes.length > (1 << (24 - p.cidr)) - 1) throw new ConfigError(`${f}.nodes`, `too many nodes for ${c.podCIDR}`);
    return { name: cname, id, podCIDR: `${formatIP(p.addr)}/${p.cidr}`, ...(podCIDRv6 ? { podCIDRv6 } : {}), nodes };
  });
  for (let i = 0; i < clusters.length; i++)
    for (let j = i + 1; j < clusters.length; j++) {
      const [a, b] = [clusters[i]!, clusters[j]!];
      if (a.name === b.name) throw new ConfigError(`clusters[${j}].name`, `duplicate cluster name "${b.name}"`);
      if (a.id === b.id) throw new ConfigError(`clusters[${j}].id`, `duplicate cluster id ${b.id} (also ${a.name})`);
      if (prefixesOverlap(parsePrefix(a.podCIDR), parsePrefix(b.podCIDR)))
        throw new ConfigError(`clusters[${j}].podCIDR`, `${b.podCIDR} overlaps ${a.podCIDR} of ${a.name}`);
      if (a.podCIDRv6 && b.podCIDRv6 && prefixesOverlap(parsePrefix(a.podCIDRv6), parsePrefix(b.podCIDRv6)))
        throw new ConfigError(`clusters[${j}].podCIDRv6`, `${b.podCIDRv6} overlaps ${a.podCIDRv6} of ${a.name}`);
    }
  const byName = new Map(clusters.map((c) => [c.name, c]));
  const pods: PodSpec[] = (doc.pods === undefined ? [] : list(doc.pods, 'pods')).map((item, i) => {
    const f = `pods[${i}]`;
    const p = obj(item, f);
    if (typeof p.name !== 'string' || !DNS.test(p.name)) throw new ConfigError(`${f}.name`, 'must be a DNS label (at most 63 characters)');
    const c = typeof p.cluster === 'string' ? byName.get(p.cluster) : undefined;
    if (!c) throw new ConfigError(`${f}.cluster`, `unknown cluster ${JSON.stringify(p.cluster)}`);
    if (typeof p.node !== 'string' || !c.nodes.includes(p.node)) throw new ConfigError(`${f}.node`, `unknown node ${JSON.stringify(p.node)} in cluster ${c.name}`);
    const namespace = p.namespace === undefined ? 'default' : p.namespace;
    if (typeof namespace !== 'string' || !DNS.test(namespace)) throw new ConfigError(`${f}.namespace`, 'must be a DNS label');
    const labels = p.labels === undefined ? {} : p.labels;
    if (!isObj(labels) || Object.values(labels).some((v) => typeof v !== 'string')) throw new ConfigError(`${f}.labels`, 'must be a map of strings');
    const ports = parseContainerPorts(p.ports, `${f}.ports`);
    return { name: p.name, cluster: c.name, node: p.node, namespace, labels: labels as Record<string, string>, ...(ports.length ? { ports } : {}) };
  });
  const seen = new Set<string>();
  pods.forEach((p, i) => {
    const k = `${p.cluster}/${p.name}`;
    if (seen.has(k)) throw new ConfigError(`pods[${i}].name`, `duplicate pod ${k}`);
    seen.add(k);
  });
  const manifests: Record<string, string[]> = {};
  if (doc.manifests !== undefined) {
    for (const [c, files] of Object.entries(obj(doc.manifests, 'manifests', 'must map cluster names to lists of files'))) {
      if (!byName.has(c)) throw new ConfigError(`manifests.${c}`, 'unknown cluster');
      if (!Array.isArray(files) || files.some((f) => typeof f !== 'string')) throw new ConfigError(`manifests.${c}`, 'must be a list of file names');
      manifests[c] = (files as string[]).map((f) => resolve(dirname(file), f));
    }
  }
  let hub: string | undefined;
  if (doc.hub !== undefined) {
    hub = oneOf(doc.hub, 'hub', [...byName.keys()], `unknown cluster ${JSON.stringify(doc.hub)}`);
  }
  let connect: Array<[string, string]>;
  if (doc.connect === undefined) {
    connect = [];
    for (let i = 0; i < clusters.length; i++)
      for (let j = i + 1; j < clusters.length; j++) {
        const pair: [string, string] = [clusters[i]!.name, clusters[j]!.name];
        if (!hub || pair.includes(hub)) connect.push(pair); // hub-and-spoke: spokes connect to the hub only
      }
  } else {
    connect = list(doc.connect, 'connect', 'must be a list of [clusterA, clusterB] pairs').map((pair, i) => {
      if (!Array.isArray(pair) || pair.length !== 2 || pair.some((x) => typeof x !== 'string' || !byName.has(x)) || pair[0] === pair[1])
        throw new ConfigError(`connect[${i}]`, 'must be a pair of two different cluster names');
      return [pair[0], pair[1]] as [string, string];
    });
  }
  return { name, file: resolve(file), clusters, pods, manifests, connect, ...(hub ? { hub } : {}) };
}

/**
 * A copy of a topology file under another name, in dir, with its manifest
 * paths made absolute: runs that reuse a topology (tests, the chaos runner)
 * do not collide with someone's testbed of the original name.
 */
export function renamedTopology(file: string, name: string, dir: string): string {
  const base = dirname(resolve(file));
  const text = readFileSync(file, 'utf8')
    .replace(/^name: .*$/m, `name: ${name}`)
    .replace(/^(\s+\w+: \[)([^\]]*)\]/gm, (line, head: string, list: string) =>
      /\.ya?ml/.test(list) ? `${head}${list.split(',').map((f) => resolve(base, f.trim())).join(', ')}]` : line,
    );
  const out = join(dir, `${name}.yaml`);
  writeFileSync(out, text);
  return out;
}

export function loadTopology(file: string): Topology {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('(file)', `cannot read ${file}: ${(err as Error).message}`);
  }
  return parseTopology(text, file);
}

// ---- the address plan (docs/testbed.md) ----------------------------------------

export const UNDERLAY_PREFIX_LEN = 16;
/** Cluster i (0-based): etcd/kvstoremesh at 198.18.(i+1).2, node j at 198.18.(i+1).(10+j). */
export const controlAddress = (ci: number): string => `198.18.${ci + 1}.2`;
export const nodeAddress = (ci: number, ni: number): string => `198.18.${ci + 1}.${10 + ni}`;
/** Cluster i's underlay range (`clustermesh enable --underlay-cidrs`): its control plane and nodes, no other cluster's. */
export const underlayCIDR = (ci: number): string => `198.18.${ci + 1}.0/24`;

/** Node j (0-based) gets the (j+1)-th /24 of its cluster's pod CIDR. */
export function nodePodCIDR(cluster: ClusterSpec, ni: number): string {
  const p = parsePrefix(cluster.podCIDR);
  const base = p.addr.readUInt32BE(0) + ((ni + 1) << 8);
  const b = Buffer.alloc(4);
  b.writeUInt32BE(base >>> 0);
  return `${formatIP(b)}/24`;
}

/** Node j (0-based) gets the (j+1)-th /64 of its cluster's IPv6 /48. */
export function nodePodCIDRv6(cluster: ClusterSpec, ni: number): string | undefined {
  if (!cluster.podCIDRv6) return undefined;
  const b = Buffer.from(parsePrefix(cluster.podCIDRv6).addr);
  b.writeUInt16BE(ni + 1, 6);
  return `${formatIP(b)}/64`;
}

/** Pod k (0-based, in order on its node) gets host 10+k of the node's /24 (and /64). */
export function podAddress(nodeCIDR: string, k: number): string {
  const p = parsePrefix(nodeCIDR);
  const b = Buffer.from(p.addr);
  b[b.length - 1] = 10 + k;
  return formatIP(b);
}
