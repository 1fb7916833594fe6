/**
 * Kubernetes-style manifests wiremesh stores: v1 Service (with Cilium's global
 * service annotations), cilium.io/v2 CiliumNetworkPolicy and
 * CiliumClusterwideNetworkPolicy, networking.k8s.io/v1 NetworkPolicy, and
 * v1 Namespace (its labels enter its pods' identities, for namespaceSelector).
 *
 * Validation follows the upstream schemas closely enough that a manifest that
 * passes here applies to Kubernetes too; every error names the field path
 * (e.g. `spec.ingress[0].toPorts[0].ports[0].port`) and the reason.
 */
import { parseAllDocuments } from 'yaml';
import { ConfigError } from '../errors.js';
import { native } from '../native/binding.js';
import { parseCanonicalIP, parsePrefix, prefixContains } from '../net/ip.js';
import { cidr, fail, isObj, list, obj, oneOf, onlyFields, type Obj } from '../validate.js';
import { MAX_NAMESPACE_LABELS } from '../controlplane/records/fields.js';

export type Manifest = {
  apiVersion: string;
  kind: 'Service' | 'CiliumNetworkPolicy' | 'CiliumClusterwideNetworkPolicy' | 'NetworkPolicy' | 'Namespace';
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  specs?: Array<Record<string, unknown>>;
};

const DNS1123 = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
export const ENTITIES = ['all', 'world', 'cluster', 'host', 'remote-node', 'kube-apiserver', 'init', 'health', 'unmanaged', 'ingress'] as const;
const PROTOCOLS = ['TCP', 'UDP', 'SCTP', 'ICMP', 'ICMPv6', 'ANY'];

/** Manifests have always said "allowed:" (the other files "expected"). */
const only = (o: Obj, path: string, allowed: string[]): void => onlyFields(o, path, allowed, 'allowed:');

function labels(v: unknown, path: string): Record<string, string> {
  const o = obj(v, path);
  for (const [k, val] of Object.entries(o)) {
    if (!LABEL_KEY.test(k)) fail(`${path}.${k}`, 'invalid label key');
    if (typeof val !== 'string' || !LABEL_VALUE.test(val)) fail(`${path}.${k}`, `invalid label value ${JSON.stringify(val)}`);
  }
  return o as Record<string, string>;
}

export function validateSelector(v: unknown, path: string): void {
  const o = obj(v, path);
  only(o, path, ['matchLabels', 'matchExpressions']);
  if (o.matchLabels !== undefined) labels(o.matchLabels, `${path}.matchLabels`);
  if (o.matchExpressions !== undefined)
    list(o.matchExpressions, `${path}.matchExpressions`).forEach((e, i) => {
      const p = `${path}.matchExpressions[${i}]`;
      const x = obj(e, p);
      only(x, p, ['key', 'operator', 'values']);
      if (typeof x.key !== 'string' || !LABEL_KEY.test(x.key)) fail(`${p}.key`, 'must be a label key');
      oneOf(x.operator, `${p}.operator`, ['In', 'NotIn', 'Exists', 'DoesNotExist'], 'must be In, NotIn, Exists or DoesNotExist');
      const values = x.values === undefined ? [] : list(x.values, `${p}.values`);
      if ((x.operator === 'In' || x.operator === 'NotIn') && values.length === 0) fail(`${p}.values`, `must not be empty for ${x.operator}`);
      if ((x.operator === 'Exists' || x.operator === 'DoesNotExist') && values.length > 0) fail(`${p}.values`, `must be empty for ${x.operator}`);
      values.forEach((val, j) => typeof val === 'string' || fail(`${p}.values[${j}]`, 'must be a string'));
    });
}

function port(v: unknown, path: string, allowName: boolean): void {
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > 65535) fail(path, 'must be 0..65535');
    return;
  }
  if (typeof v === 'string') {
    if (/^\d+$/.test(v)) return port(Number(v), path, allowName);
    if (allowName && /^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$/.test(v)) return;
  }
  fail(path, `must be a port number${allowName ? ' or name' : ''}`);
}

/**
 * A CIDR with exceptions. `strictExcept` (NetworkPolicy's ipBlock, as the API
 * validates it): every except entry of the same family and strictly inside
 * `cidr`; one elsewhere would otherwise be silently ignored, leaving the
 * addresses it was meant to exclude allowed.
 */
function cidrSet(v: unknown, path: string, strictExcept = false): void {
  const o = obj(v, path);
  only(o, path, ['cidr', 'except', 'cidrGroupRef']);
  const outer = cidr(o.cidr, `${path}.cidr`);
  if (o.except === undefined) return;
  list(o.except, `${path}.except`).forEach((e, i) => {
    const inner = cidr(e, `${path}.except[${i}]`);
    if (strictExcept && !(inner.addr.length === outer.addr.length && inner.cidr > outer.cidr && prefixContains(outer, inner.addr)))
      fail(`${path}.except[${i}]`, `must be a strict subset of cidr ${o.cidr as string} (same address family)`);
  });
}

function ciliumPorts(v: unknown, path: string): void {
  list(v, path).forEach((pr, i) => {
    const p = `${path}[${i}]`;
    const o = obj(pr, p);
    only(o, p, ['ports', 'rules']);
    if (o.ports !== undefined)
      list(o.ports, `${p}.ports`).forEach((pp, j) => {
        const q = `${p}.ports[${j}]`;
        const x = obj(pp, q);
        only(x, q, ['port', 'endPort', 'protocol']);
        port(x.port, `${q}.port`, true);
        if (x.endPort !== undefined) {
          port(x.endPort, `${q}.endPort`, false);
          if (Number(x.endPort) < Number(x.port)) fail(`${q}.endPort`, 'must not be below port');
        }
        if (x.protocol !== undefined) oneOf(x.protocol, `${q}.protocol`, PROTOCOLS);
      });
    if (o.rules !== undefined) {
      const r = obj(o.rules, `${p}.rules`);
      if (r.http !== undefined)
        list(r.http, `${p}.rules.http`).forEach((h, j) => {
          const q = `${p}.rules.http[${j}]`;
          const x = obj(h, q);
          only(x, q, ['method', 'path', 'host', 'headers', 'headerMatches']);
          for (const f of ['method', 'path', 'host'])
            if (x[f] !== undefined) {
              if (typeof x[f] !== 'string') fail(`${q}.${f}`, 'must be a string (a regular expression)');
              // The proxy matches with RE2 (linear time; no backreferences or lookaround): refuse here
              // what it would refuse, with its own words, rather than a rule that silently matches nothing.
              const err = native.validateRegex(x[f] as string);
              if (err !== null) fail(`${q}.${f}`, `is not a regular expression the L7 proxy accepts (RE2 syntax): ${err}`);
            }
        });
    }
  });
}

function ciliumRule(v: unknown, path: string, dir: 'ingress' | 'egress'): void {
  const o = obj(v, path);
  const peer = dir === 'ingress' ? 'from' : 'to';
  only(o, path, [`${peer}Endpoints`, `${peer}Entities`, `${peer}CIDR`, `${peer}CIDRSet`, `${peer}Requires`, 'toPorts', 'icmps', ...(dir === 'egress' ? ['toFQDNs', 'toServices'] : [])]);
  if (o[`${peer}Endpoints`] !== undefined) list(o[`${peer}Endpoints`], `${path}.${peer}Endpoints`).forEach((s, i) => validateSelector(s, `${path}.${peer}Endpoints[${i}]`));
  if (o[`${peer}Entities`] !== undefined)
    list(o[`${peer}Entities`], `${path}.${peer}Entities`).forEach((e, i) => {
      oneOf(e, `${path}.${peer}Entities[${i}]`, ENTITIES, `unknown entity ${JSON.stringify(e)} (known: ${ENTITIES.join(', ')})`);
    });
  if (o[`${peer}CIDR`] !== undefined) list(o[`${peer}CIDR`], `${path}.${peer}CIDR`).forEach((c, i) => cidr(c, `${path}.${peer}CIDR[${i}]`));
  if (o[`${peer}CIDRSet`] !== undefined) list(o[`${peer}CIDRSet`], `${path}.${peer}CIDRSet`).forEach((c, i) => cidrSet(c, `${path}.${peer}CIDRSet[${i}]`));
  if (o.toPorts !== undefined) ciliumPorts(o.toPorts, `${path}.toPorts`);
}

function ciliumSpec(v: unknown, path: string, clusterwide: boolean): void {
  const o = obj(v, path);
  only(o, path, ['endpointSelector', 'nodeSelector', 'ingress', 'egress', 'ingressDeny', 'egressDeny', 'description', 'labels', 'enableDefaultDeny']);
  if (o.endpointSelector === undefined && o.nodeSelector === undefined) fail(`${path}.endpointSelector`, 'is required');
  if (o.endpointSelector !== undefined) validateSelector(o.endpointSelector, `${path}.endpointSelector`);
  if (o.nodeSelector !== undefined && !clusterwide) fail(`${path}.nodeSelector`, 'is only allowed in a CiliumClusterwideNetworkPolicy');
  for (const [f, dir] of [['ingress', 'ingress'], ['ingressDeny', 'ingress'], ['egress', 'egress'], ['egressDeny', 'egress']] as const)
    if (o[f] !== undefined) list(o[f], `${path}.${f}`).forEach((r, i) => ciliumRule(r, `${path}.${f}[${i}]`, dir));
}

function npPeers(v: unknown, path: string): void {
  list(v, path).forEach((pe, i) => {
    const p = `${path}[${i}]`;
    const o = obj(pe, p);
    only(o, p, ['podSelector', 'namespaceSelector', 'ipBlock']);
    if (o.ipBlock !== undefined) {
      if (o.podSelector !== undefined || o.namespaceSelector !== undefined) fail(`${p}.ipBlock`, 'cannot be combined with podSelector or namespaceSelector');
      cidrSet(o.ipBlock, `${p}.ipBlock`, true);
    }
    if (o.podSelector !== undefined) validateSelector(o.podSelector, `${p}.podSelector`);
    if (o.namespaceSelector !== undefined) validateSelector(o.namespaceSelector, `${p}.namespaceSelector`);
  });
}

function networkPolicySpec(v: unknown, path: string): void {
  const o = obj(v, path);
  only(o, path, ['podSelector', 'policyTypes', 'ingress', 'egress']);
  if (o.podSelector === undefined) fail(`${path}.podSelector`, 'is required (use {} for every pod)');
  validateSelector(o.podSelector, `${path}.podSelector`);
  if (o.policyTypes !== undefined)
    list(o.policyTypes, `${path}.policyTypes`).forEach((t, i) => oneOf(t, `${path}.policyTypes[${i}]`, ['Ingress', 'Egress'], 'must be Ingress or Egress'));
  for (const [f, peer] of [['ingress', 'from'], ['egress', 'to']] as const)
    if (o[f] !== undefined)
      list(o[f], `${path}.${f}`).forEach((r, i) => {
        const p = `${path}.${f}[${i}]`;
        const x = obj(r, p);
        only(x, p, [peer, 'ports']);
        if (x[peer] !== undefined) npPeers(x[peer], `${p}.${peer}`);
        if (x.ports !== undefined)
          list(x.ports, `${p}.ports`).forEach((pp, j) => {
            const q = `${p}.ports[${j}]`;
            const y = obj(pp, q);
            only(y, q, ['port', 'endPort', 'protocol']);
            if (y.port !== undefined) port(y.port, `${q}.port`, true);
            // the API's ports are 1..65535; 0 would compile to "every port"
            if (y.port !== undefined && /^\d+$/.test(String(y.port)) && Number(y.port) === 0) fail(`${q}.port`, 'must be 1..65535');
            if (y.endPort !== undefined) {
              port(y.endPort, `${q}.endPort`, false);
              if (typeof y.port !== 'number') fail(`${q}.endPort`, 'needs a numeric port');
              if ((y.endPort as number) < y.port) fail(`${q}.endPort`, 'must not be below port');
            }
            if (y.protocol !== undefined) oneOf(y.protocol, `${q}.protocol`, ['TCP', 'UDP', 'SCTP'], 'must be TCP, UDP or SCTP');
          });
      });
}

export const GLOBAL_ANNOTATION = 'service.cilium.io/global';
export const SHARED_ANNOTATION = 'service.cilium.io/shared';
export const AFFINITY_ANNOTATION = 'service.cilium.io/affinity';
export const AFFINITIES = ['local', 'remote', 'none', 'nearest'];

function serviceSpec(m: Manifest, v: unknown, path: string): void {
  const o = obj(v, path);
  only(o, path, ['selector', 'ports', 'type', 'clusterIP', 'clusterIPs', 'sessionAffinity', 'ipFamilies', 'ipFamilyPolicy']);
  if (o.type !== undefined && o.type !== 'ClusterIP') fail(`${path}.type`, 'only ClusterIP services are supported');
  if (o.selector !== undefined) labels(o.selector, `${path}.selector`);
  const ports = list(o.ports, `${path}.ports`);
  if (ports.length === 0) fail(`${path}.ports`, 'at least one port is required');
  const names = new Set<string>();
  ports.forEach((pp, i) => {
    const q = `${path}.ports[${i}]`;
    const x = obj(pp, q);
    only(x, q, ['name', 'port', 'targetPort', 'protocol', 'appProtocol']);
    port(x.port, `${q}.port`, false);
    if (x.port === 0) fail(`${q}.port`, 'must be 1..65535');
    if (x.targetPort !== undefined) {
      if (typeof x.targetPort === 'string') fail(`${q}.targetPort`, 'named target ports are not supported: give the backend port number');
      port(x.targetPort, `${q}.targetPort`, false);
      if (x.targetPort === 0) fail(`${q}.targetPort`, 'must be 1..65535');
    }
    if (x.protocol !== undefined) oneOf(x.protocol, `${q}.protocol`, ['TCP', 'UDP'], 'must be TCP or UDP (the service data path translates TCP and UDP)');
    if (ports.length > 1 && typeof x.name !== 'string') fail(`${q}.name`, 'is required when a service has several ports');
    if (typeof x.name === 'string') {
      if (names.has(x.name)) fail(`${q}.name`, `duplicate port name ${x.name}`);
      names.add(x.name);
    }
  });
  if (o.clusterIP !== undefined && o.clusterIP !== 'None' && o.clusterIP !== '') {
    // one address, spelled as the VIP claim's key (keys.vipKey) and the agent's frontend row read it: a prefix or
    // another spelling would be claimed under another key (one VIP per address bypassed) and fail on the agent
    if (typeof o.clusterIP !== 'string' || !parseCanonicalIP(o.clusterIP))
      fail(`${path}.clusterIP`, 'must be one IP address in canonical form (no prefix length), e.g. 100.127.1.9');
  }
  const ann = m.metadata.annotations ?? {};
  for (const k of [GLOBAL_ANNOTATION, SHARED_ANNOTATION])
    if (ann[k] !== undefined) oneOf(ann[k], `metadata.annotations["${k}"]`, ['true', 'false'], 'must be "true" or "false"');
  if (ann[AFFINITY_ANNOTATION] !== undefined && !AFFINITIES.includes(ann[AFFINITY_ANNOTATION]!.toLowerCase()))
    fail(`metadata.annotations["${AFFINITY_ANNOTATION}"]`, `must be one of ${AFFINITIES.join(', ')}`);
  const w = ann['wiremesh.io/weight'];
  if (w !== undefined && (!/^[0-9]{1,4}$/.test(w) || Number(w) < 1 || Number(w) > 1000))
    fail('metadata.annotations["wiremesh.io/weight"]', 'must be an integer 1..1000 (the Maglev weight of each backend this cluster exports)');
}

/** Every kind `apply` stores, with its apiVersion. */
export const KINDS: Record<string, string> = {
  Service: 'v1',
  CiliumNetworkPolicy: 'cilium.io/v2',
  CiliumClusterwideNetworkPolicy: 'cilium.io/v2',
  NetworkPolicy: 'networking.k8s.io/v1',
  Namespace: 'v1',
};


function namespaceObject(m: Manifest, spec: unknown): void {
  const labels = m.metadata.labels ?? {};
  if (Object.keys(labels).length > MAX_NAMESPACE_LABELS) fail('metadata.labels', `at most ${MAX_NAMESPACE_LABELS} labels (they enter every pod's identity)`);
  // Kubernetes sets this label itself, always to the name
  const own = labels['kubernetes.io/metadata.name'];
  if (own !== undefined && own !== m.metadata.name) fail('metadata.labels["kubernetes.io/metadata.name"]', `must be the namespace's name (${m.metadata.name})`);
  if (spec !== undefined) {
    const o = obj(spec, 'spec');
    only(o, 'spec', ['finalizers']);
    if (o.finalizers !== undefined) list(o.finalizers, 'spec.finalizers').forEach((f, i) => typeof f === 'string' || fail(`spec.finalizers[${i}]`, 'must be a string'));
  }
}

export function validateManifest(doc: unknown, where = ''): Manifest {
  const p = (f: string) => (where ? `${where}: ${f}` : f);
  const o = obj(doc, p('(document)'));
  const kind = oneOf(o.kind, p('kind'), Object.keys(KINDS) as Array<Manifest['kind']>);
  if (o.apiVersion !== KINDS[kind]) fail(p('apiVersion'), `must be ${KINDS[kind]} for ${kind}`);
  const md = obj(o.metadata, p('metadata'));
  if (typeof md.name !== 'string' || !DNS1123.test(md.name) || md.name.length > 63) fail(p('metadata.name'), 'must be a DNS-1123 label');
  const clusterwide = kind === 'CiliumClusterwideNetworkPolicy' || kind === 'Namespace';
  if (clusterwide && md.namespace !== undefined) fail(p('metadata.namespace'), `a ${kind === 'Namespace' ? 'Namespace' : 'clusterwide policy'} has no namespace`);
  if (!clusterwide && md.namespace !== undefined && (typeof md.namespace !== 'string' || !DNS1123.test(md.namespace))) fail(p('metadata.namespace'), 'must be a DNS-1123 label');
  if (md.labels !== undefined) labels(md.labels, p('metadata.labels'));
  if (md.annotations !== undefined) {
    const a = obj(md.annotations, p('metadata.annotations'));
    for (const [k, v] of Object.entries(a)) if (typeof v !== 'string') fail(p(`metadata.annotations["${k}"]`), 'must be a string');
  }
  const meshWide = (md.annotations as Record<string, unknown> | undefined)?.['wiremesh.io/mesh-wide'];
  if (meshWide !== undefined) oneOf(meshWide, p('metadata.annotations["wiremesh.io/mesh-wide"]'), ['true', 'false'], 'must be "true" or "false"');
  if (meshWide !== undefined && (kind === 'Service' || kind === 'Namespace')) fail(p('metadata.annotations["wiremesh.io/mesh-wide"]'), 'applies to policies only (services use service.cilium.io/global)');
  const m: Manifest = { apiVersion: o.apiVersion as string, kind, metadata: { ...(md as Manifest['metadata']) } };
  if (!clusterwide && !m.metadata.namespace) m.metadata.namespace = 'default';
  try {
    switch (m.kind) {
      case 'Service':
        serviceSpec(m, o.spec, 'spec');
        break;
      case 'NetworkPolicy':
        networkPolicySpec(o.spec, 'spec');
        break;
      case 'Namespace':
        namespaceObject(m, o.spec);
        break;
      default:
        if (o.spec === undefined && o.specs === undefined) fail('spec', 'is required');
        if (o.spec !== undefined) ciliumSpec(o.spec, 'spec', clusterwide);
        if (o.specs !== undefined) list(o.specs, 'specs').forEach((s, i) => ciliumSpec(s, `specs[${i}]`, clusterwide));
    }
  } catch (err) {
    if (err instanceof ConfigError && where) throw new ConfigError(`${where}: ${err.field}`, err.message.slice(err.field.length + 2));
    throw err;
  }
  if (o.spec !== undefined) m.spec = o.spec as Obj;
  if (o.specs !== undefined) m.specs = o.specs as Obj[];
  return m;
}

/** Parses a multi-document YAML file (also `kind: List`), validating every document. */
export function parseManifests(text: string, file: string): Manifest[] {
  const out: Manifest[] = [];
  parseAllDocuments(text).forEach((d, i) => {
    if (d.errors.length) fail(`${file}#${i + 1}`, `not valid YAML: ${d.errors[0]!.message}`);
    const v = d.toJS() as unknown;
    if (v === null || v === undefined) return;
    if (isObj(v) && v.kind === 'List') list(v.items, `${file}#${i + 1}: items`).forEach((it, j) => out.push(validateManifest(it, `${file}#${i + 1}.items[${j}]`)));
    else out.push(validateManifest(v, `${file}#${i + 1}`));
  });
  if (out.length === 0) fail(file, 'holds no manifest');
  return out;
}

/** The etcd key name of a manifest under its type's prefix (docs/etcd-keys.md). */
export function manifestName(m: Manifest): { type: 'services' | 'policies' | 'namespaces'; name: string } {
  if (m.kind === 'Service') return { type: 'services', name: `${m.metadata.namespace}/${m.metadata.name}` };
  if (m.kind === 'Namespace') return { type: 'namespaces', name: m.metadata.name };
  const kind = m.kind === 'CiliumNetworkPolicy' ? 'cnp' : m.kind === 'NetworkPolicy' ? 'knp' : 'ccnp';
  return { type: 'policies', name: `${m.metadata.namespace ?? '_clusterwide'}/${kind}.${m.metadata.name}` };
}
