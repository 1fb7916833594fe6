// test/helpers/topology.ts writes the same topologies the netns tests used to
// write out by hand: what the testbed parses from its YAML equals what it
// parses from the hand-written file, for the shapes the tests use.
import { describe, expect, it } from 'vitest';
import { parseTopology } from '../../src/testbed/topology.js';
import { shopPod, topologyYaml } from '../helpers/topology.js';

const FILE = '/tmp/wm-topology-helper/topo.yaml';
const same = (generated: string, byHand: string) => expect(parseTopology(generated, FILE)).toEqual(parseTopology(byHand, FILE));

describe('topologyYaml (netns test helper)', () => {
  it('numbered clusters, shop pods and manifests', () => {
    same(
      topologyYaml({ name: 'l1', clusters: [2, 1, 1], pods: [shopPod('api', 'c1/n2', 'api'), { name: 'x', cluster: 'c3', node: 'n1' }], manifests: { c1: ['/tmp/p.yaml'], c3: ['q.yaml'] } }),
      `name: l1
clusters:
  - { name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1, n2] }
  - { name: c2, id: 2, podCIDR: 100.66.0.0/16, nodes: [n1] }
  - { name: c3, id: 3, podCIDR: 100.67.0.0/16, nodes: [n1] }
pods:
  - { name: api, cluster: c1, node: n2, namespace: shop, labels: { app: api } }
  - { name: x, cluster: c3, node: n1 }
manifests: { c1: [/tmp/p.yaml], c3: [q.yaml] }
`,
    );
  });

  it('clusters with their own names, ids, pod CIDRs and IPv6 prefixes; named ports', () => {
    same(
      topologyYaml({
        name: 'v1',
        clusters: [{ name: 'cluster-one', id: 1, nodes: ['n1', 'a-long-node'], podCIDRv6: 'fd65:1::/48' }, { name: 'c32', id: 32, podCIDR: '100.68.0.0/16', nodes: 1 }],
        pods: [{ name: 'a', cluster: 'c32', node: 'n1', namespace: 'x', labels: { pod: 'a' }, ports: [{ name: 'serve-7000-tcp', containerPort: 7000 }] }],
      }),
      `name: v1
clusters:
  - { name: cluster-one, id: 1, podCIDR: 100.65.0.0/16, podCIDRv6: "fd65:1::/48", nodes: [n1, a-long-node] }
  - { name: c32, id: 32, podCIDR: 100.68.0.0/16, nodes: [n1] }
pods:
  - { name: a, cluster: c32, node: n1, namespace: x, labels: { pod: a }, ports: [{ name: serve-7000-tcp, containerPort: 7000 }] }
`,
    );
  });

  it('hub-and-spoke and explicit connections', () => {
    same(topologyYaml({ name: 'h1', hub: 'c1', clusters: [2, 1, 1] }), 'name: h1\nhub: c1\nclusters:\n  - { name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1, n2] }\n  - { name: c2, id: 2, podCIDR: 100.66.0.0/16, nodes: [n1] }\n  - { name: c3, id: 3, podCIDR: 100.67.0.0/16, nodes: [n1] }\n');
    same(topologyYaml({ name: 'cn1', clusters: [2, 1], connect: [['c1', 'c2']] }), 'name: cn1\nclusters:\n  - { name: c1, id: 1, podCIDR: 100.65.0.0/16, nodes: [n1, n2] }\n  - { name: c2, id: 2, podCIDR: 100.66.0.0/16, nodes: [n1] }\nconnect: [[c1, c2]]\n');
  });
});
