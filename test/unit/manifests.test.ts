import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { manifestName, parseManifests } from '../../src/manifests/validate.js';

const example = readFileSync(new URL('../../examples/manifests/shop.yaml', import.meta.url), 'utf8');

function errorOf(yaml: string): string {
  try {
    parseManifests(yaml, 'f.yaml');
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  return 'no error';
}

const cnp = (spec: string) => `apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: { name: p, namespace: shop }\nspec:\n${spec}`;

describe('manifest validation', () => {
  it('accepts the example file: CNP, CCNP, NetworkPolicy and a global Service', () => {
    const ms = parseManifests(example, 'shop.yaml');
    expect(ms.map((m) => m.kind)).toEqual(['CiliumNetworkPolicy', 'CiliumClusterwideNetworkPolicy', 'NetworkPolicy', 'Service']);
    expect(ms.map((m) => manifestName(m))).toEqual([
      { type: 'policies', name: 'shop/cnp.backend-from-frontend' },
      { type: 'policies', name: '_clusterwide/ccnp.world-egress' },
      { type: 'policies', name: 'shop/knp.isolate' },
      { type: 'services', name: 'shop/backend' },
    ]);
  });

  it('defaults the namespace and reads kind: List', () => {
    const ms = parseManifests(`kind: List\napiVersion: v1\nitems:\n  - { apiVersion: v1, kind: Service, metadata: { name: s }, spec: { ports: [{ port: 80 }] } }\n`, 'l.yaml');
    expect(ms[0]!.metadata.namespace).toBe('default');
  });

  const cases: Array<[string, string, RegExp]> = [
    ['unknown kind', 'apiVersion: v1\nkind: Pod\nmetadata: { name: x }\n', /f.yaml#1: kind: must be one of/],
    ['wrong apiVersion', 'apiVersion: cilium.io/v1\nkind: CiliumNetworkPolicy\nmetadata: { name: x }\nspec: {}\n', /apiVersion: must be cilium.io\/v2/],
    ['bad name', 'apiVersion: v1\nkind: Service\nmetadata: { name: Bad_Name }\nspec: { ports: [{ port: 80 }] }\n', /metadata.name: must be a DNS-1123 label/],
    ['missing endpointSelector', cnp('  ingress: []\n'), /spec.endpointSelector: is required/],
    ['bad operator', cnp('  endpointSelector: { matchExpressions: [{ key: a, operator: Equals, values: [x] }] }\n'), /spec.endpointSelector.matchExpressions\[0\].operator: must be In, NotIn, Exists or DoesNotExist/],
    ['In without values', cnp('  endpointSelector: { matchExpressions: [{ key: a, operator: In }] }\n'), /matchExpressions\[0\].values: must not be empty for In/],
    ['bad entity', cnp('  endpointSelector: {}\n  ingress: [{ fromEntities: [planet] }]\n'), /spec.ingress\[0\].fromEntities\[0\]: unknown entity "planet"/],
    ['bad port', cnp('  endpointSelector: {}\n  ingress: [{ toPorts: [{ ports: [{ port: "70000" }] }] }]\n'), /spec.ingress\[0\].toPorts\[0\].ports\[0\].port: must be 0..65535/],
    ['endPort below port', cnp('  endpointSelector: {}\n  egress: [{ toPorts: [{ ports: [{ port: "90", endPort: 80 }] }] }]\n'), /ports\[0\].endPort: must not be below port/],
    ['bad protocol', cnp('  endpointSelector: {}\n  egress: [{ toPorts: [{ ports: [{ port: "80", protocol: HTTP }] }] }]\n'), /protocol: must be one of TCP, UDP/],
    ['bad CIDR', cnp('  endpointSelector: {}\n  egress: [{ toCIDR: [300.1.1.1/8] }]\n'), /spec.egress\[0\].toCIDR\[0\]/],
    ['from-field in egress', cnp('  endpointSelector: {}\n  egress: [{ fromEndpoints: [{}] }]\n'), /spec.egress\[0\].fromEndpoints: unknown field/],
    ['bad http regex', cnp('  endpointSelector: {}\n  ingress: [{ toPorts: [{ ports: [{ port: "80" }], rules: { http: [{ path: "([" }] } }] }]\n'), /rules.http\[0\].path: is not a regular expression the L7 proxy accepts \(RE2 syntax\)/],
    ['nodeSelector in a namespaced policy', cnp('  nodeSelector: {}\n'), /spec.nodeSelector: is only allowed in a CiliumClusterwideNetworkPolicy/],
    ['NP without podSelector', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: x }\nspec: { ingress: [] }\n', /spec.podSelector: is required/],
    ['NP ipBlock mixed', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: x }\nspec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: 100.64.0.0/10 }, podSelector: {} }] }] }\n', /spec.ingress\[0\].from\[0\].ipBlock: cannot be combined/],
    // regressions: except entries the compiler silently ignored (the addresses meant to be excluded stayed allowed), port 0 meaning every port
    ['NP except of another family', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: x }\nspec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: 100.64.0.0/10, except: ["::ffff:100.65.0.0/112"] } }] }] }\n', /ipBlock.except\[0\]: must be a strict subset of cidr 100.64.0.0\/10/],
    ['NP except outside cidr', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: x }\nspec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: 100.64.0.0/16, except: [100.65.0.0/24] } }] }] }\n', /ipBlock.except\[0\]: must be a strict subset/],
    ['NP except equal to cidr', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: x }\nspec: { podSelector: {}, ingress: [{ from: [{ ipBlock: { cidr: 0.0.0.0/0, except: [0.0.0.0/0] } }] }] }\n', /ipBlock.except\[0\]: must be a strict subset/],
    ['NP port 0', 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: { name: x }\nspec: { podSelector: {}, ingress: [{ ports: [{ port: 0 }] }] }\n', /ingress\[0\].ports\[0\].port: must be 1..65535/],
    ['service without ports', 'apiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: { selector: { app: a } }\n', /spec.ports: must be a list/],
    ['unnamed ports', 'apiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: { ports: [{ port: 80 }, { port: 81 }] }\n', /spec.ports\[0\].name: is required when a service has several ports/],
    ['bad affinity', 'apiVersion: v1\nkind: Service\nmetadata: { name: s, annotations: { service.cilium.io/affinity: closest } }\nspec: { ports: [{ port: 80 }] }\n', /affinity"\]: must be one of local, remote, none, nearest/],
    ['bad global flag', 'apiVersion: v1\nkind: Service\nmetadata: { name: s, annotations: { service.cilium.io/global: "yes" } }\nspec: { ports: [{ port: 80 }] }\n', /global"\]: must be "true" or "false"/],
    ['NodePort', 'apiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: { type: NodePort, ports: [{ port: 80 }] }\n', /spec.type: only ClusterIP/],
    ['broken YAML', 'kind: [\n', /f.yaml#1: not valid YAML/],
    ['empty file', '\n', /f.yaml: holds no manifest/],
  ];
  for (const [what, yaml, re] of cases) it(`rejects ${what} with the field and the reason`, () => expect(errorOf(yaml)).toMatch(re));

  it('names the failing document in a multi-document file', () => {
    expect(errorOf(`${example}\n---\napiVersion: v1\nkind: Service\nmetadata: { name: s }\nspec: { ports: [{ port: 0 }] }\n`)).toMatch(/f.yaml#5: spec.ports\[0\].port: must be 1..65535/);
  });
});
