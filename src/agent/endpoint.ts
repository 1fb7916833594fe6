/**
 * A local endpoint (a pod on this node) as the agent API's POST /v1/endpoints body declares it, decoded and
 * checked once here (an HTTP client's input: DNS-label names, at most MAX_POD_LABELS labels, 1..MAX_ADDRESSES
 * canonical addresses, named container ports). Errors: ConfigError naming the field.
 */
import { ConfigError } from '../errors.js';
import { obj, validateAddress } from '../validate.js';
import { DERIVED_IDENTITY_LABELS, DNS_LABEL_RE as DNS_LABEL, MAX_ADDRESSES, MAX_LABELS, MAX_NAMESPACE_LABELS, MAX_POD_LABELS } from '../controlplane/records/fields.js';
import { formatIP, parseIP } from '../net/ip.js';
import { checkPodLabel } from './labels.js';
import { parseContainerPorts, type ContainerPort } from '../policy/ports.js';

export interface LocalEndpoint {
  name: string;
  namespace: string;
  labels: Record<string, string>;
  ips: string[];
  /** Named container ports (rules naming a port resolve against them). */
  ports?: ContainerPort[];
}

export function validateEndpoint(body: unknown): LocalEndpoint {
  if (typeof body !== 'object' || body === null) throw new ConfigError('(body)', 'must be a JSON object');
  const b = body as Record<string, unknown>;
  for (const f of ['name', 'namespace'] as const)
    if (typeof b[f] !== 'string' || !DNS_LABEL.test(b[f] as string)) throw new ConfigError(f, `must be a DNS label, got ${JSON.stringify(b[f])}`);
  const labels = obj(b.labels ?? {}, 'labels', 'must be a map');
  if (Object.keys(labels).length > MAX_POD_LABELS) throw new ConfigError('labels', `at most ${MAX_POD_LABELS} labels (with its namespace's ${MAX_NAMESPACE_LABELS} and ${DERIVED_IDENTITY_LABELS} derived ones, its identity holds at most ${MAX_LABELS})`);
  for (const [k, v] of Object.entries(labels)) checkPodLabel(k, v);
  if (!Array.isArray(b.ips) || b.ips.length === 0 || b.ips.length > MAX_ADDRESSES) throw new ConfigError('ips', `must be a list of 1..${MAX_ADDRESSES} IP addresses`);
  // canonical text (fe80:0::1 and fe80::1 are one address): records and conflicts compare strings
  const ips = b.ips.map((ip, i) => formatIP(parseIP(validateAddress(ip, `ips[${i}]`))!));
  if (new Set(ips).size !== ips.length) throw new ConfigError('ips', 'lists an address twice');
  const ports = parseContainerPorts(b.ports, 'ports');
  return { name: b.name as string, namespace: b.namespace as string, labels: labels as Record<string, string>, ips, ...(ports.length ? { ports } : {}) };
}
