/**
 * Testbed topology files for the netns tests, built from a few parameters
 * rather than YAML written out in each test (the format: src/testbed/topology.ts,
 * docs/testbed.md).
 *
 *   writeTopology(file, {
 *     name: 'l123',
 *     clusters: [2, 1],                         // c1 with n1, n2; c2 with n1
 *     pods: [shopPod('api', 'c1/n2', 'api')],   // namespace shop, labels { app: api }
 *     manifests: { c1: [policyFile] },
 *   });
 *
 * A cluster given as a number n is c<i> (i = its place, from 1), id i, pod CIDR
 * 100.(64+i).0.0/16, nodes n1..n<n>; given as an object it may set its name,
 * id, pod CIDRs and node names itself (the pod CIDR follows the id when not set).
 */
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import type { ContainerPort } from '../../src/policy/ports.js';

export type ClusterArg = number | { nodes: number | string[]; name?: string; id?: number; podCIDR?: string; podCIDRv6?: string };

export interface PodArg {
  name: string;
  cluster: string;
  node: string;
  /** Default: the testbed's (default). */
  namespace?: string;
  labels?: Record<string, string>;
  /** Named container ports; protocol defaults to TCP as in the file. */
  ports?: Array<Omit<ContainerPort, 'protocol'> & Partial<Pick<ContainerPort, 'protocol'>>>;
}

export interface TopologyArgs {
  /** 1-12 lowercase letters, digits or "-": the testbed's namespaces are wmtb-<name>-... */
  name: string;
  clusters: ClusterArg[];
  pods?: PodArg[];
  /** Cluster name -> manifest files applied to it once the mesh is up. */
  manifests?: Record<string, string[]>;
  /** Default: every pair of clusters. */
  connect?: Array<[string, string]>;
  /** Hub-and-spoke through this cluster. */
  hub?: string;
}

/** A pod in namespace shop labelled app=<app>, the shape most tests use; at is "cluster/node". */
export function shopPod(name: string, at: string, app: string): PodArg {
  const [cluster, node] = at.split('/') as [string, string];
  return { name, cluster, node, namespace: 'shop', labels: { app } };
}

const nodeNames = (nodes: number | string[]) => (typeof nodes === 'number' ? Array.from({ length: nodes }, (_, i) => `n${i + 1}`) : nodes);

/** The topology document (a YAML string) for these arguments. */
export function topologyYaml(t: TopologyArgs): string {
  const clusters = t.clusters.map((c, i) => {
    const o = typeof c === 'number' ? { nodes: c } : c;
    const id = o.id ?? i + 1;
    return {
      name: o.name ?? `c${i + 1}`,
      id,
      podCIDR: o.podCIDR ?? `100.${64 + id}.0.0/16`,
      ...(o.podCIDRv6 ? { podCIDRv6: o.podCIDRv6 } : {}),
      nodes: nodeNames(o.nodes),
    };
  });
  const doc = {
    name: t.name,
    ...(t.hub ? { hub: t.hub } : {}),
    clusters,
    ...(t.pods?.length ? { pods: t.pods } : {}),
    ...(t.manifests ? { manifests: t.manifests } : {}),
    ...(t.connect ? { connect: t.connect } : {}),
  };
  return stringify(doc);
}

/** Writes topologyYaml(t) to file; returns file. */
export function writeTopology(file: string, t: TopologyArgs): string {
  writeFileSync(file, topologyYaml(t));
  return file;
}
