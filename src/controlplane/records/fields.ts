/**
 * Field schemas every record shares: names, addresses, prefixes, labels,
 * with the limits that keep one record small (docs/security.md, "Bounds").
 */
import { z } from 'zod';
import { formatIP, parseIP, parsePrefix } from '../../net/ip.js';

export const CLUSTER_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
/**
 * Kubernetes label key (an optional DNS-subdomain prefix of at most 253 characters and a `/`, then a name of at
 * most 63): at most 317 characters. The prefix's bound matters: an identity carries a namespace label under
 * NAMESPACE_LABELS_PREFIX, and IDENTITY_LABEL_KEY_MAX is sized from it. And the value.
 */
export const LABEL_KEY_RE = /^((?=[-a-z0-9.]{1,253}\/)[a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
export const LABEL_VALUE_RE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
/** A DNS-1123 label: node, namespace and pod names. */
export const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export const MAX_LABELS = 64;
/** Labels a Namespace may carry: each enters every identity of its pods. */
export const MAX_NAMESPACE_LABELS = 16;
/** Labels the agent adds to every endpoint identity (namespace, cluster, the namespace's name label). */
export const DERIVED_IDENTITY_LABELS = 3;
/**
 * A pod's own labels. With its namespace's and the derived ones its identity
 * stays within MAX_LABELS: an identity over it is refused by every reader
 * (its own node included), so no rule could name it, deny rules included.
 */
export const MAX_POD_LABELS = MAX_LABELS - MAX_NAMESPACE_LABELS - DERIVED_IDENTITY_LABELS;
export const MAX_ADDRESSES = 16;
export const MAX_CIDRS = 16;

export const clusterName = z.string().regex(CLUSTER_NAME_RE, 'must be 1-32 characters of lowercase letters, digits and "-"');
/**
 * Cluster ids 1..511 as a record may spell them; a mesh configured for 255
 * clusters (the default) takes 1..255 only: cluster-config refuses a larger
 * id, and Trust (trust.ts) refuses any record or pin above the local limit
 * (docs/architecture.md, "Cluster ids").
 */
export const clusterId = z.number().int().min(1).max(511);
/** Cilium's max-connected-clusters: 255 (identity = cluster << 16 | local) or 511 (cluster << 15 | local). */
export const maxConnectedClusters = z.union([z.literal(255), z.literal(511)]);
/** Node names: DNS-1123 subdomain-ish, no slash (they are key segments). */
export const NODE_NAME_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
export const nodeName = z.string().min(1).max(253).regex(NODE_NAME_RE, 'must be a DNS name');
export const dnsLabel = z.string().regex(DNS_LABEL_RE, 'must be a DNS-1123 label');
export const port = z.number().int().min(1).max(65535);

/**
 * An address in its one canonical text (readers compare addresses as
 * strings: "fe80:0::1" must not pass for another address than "fe80::1"),
 * and no IPv4-mapped IPv6 (::ffff:a.b.c.d would dodge IPv4 checks).
 */
export function isCanonicalIP(s: string): boolean {
  const a = parseIP(s);
  if (!a || formatIP(a) !== s) return false;
  return !(a.length === 16 && a.subarray(0, 10).every((x) => x === 0) && a[10] === 0xff && a[11] === 0xff);
}
export const ipAddress = z.string().max(64).refine(isCanonicalIP, 'not an IP address in canonical form');

/** A prefix "address/length" that parsePrefix takes (host bits may be set: they are masked where it is used). */
export function isCidr(s: string): boolean {
  if (!s.includes('/')) return false;
  try {
    parsePrefix(s);
    return true;
  } catch {
    return false;
  }
}
export const cidr = z.string().max(64).refine(isCidr, 'not a CIDR');

/** Cilium's identity label keys (namespace labels under io.cilium.k8s.namespace.labels.<key>). */
export const IDENTITY_LABEL_KEY_RE = /^[A-Za-z0-9][-A-Za-z0-9_./]*$/;
/** An identity label key's length: a Kubernetes key's 317 under the namespace-label prefix's 31 characters. */
export const IDENTITY_LABEL_KEY_MAX = 'io.cilium.k8s.namespace.labels.'.length + 317;

export const labels = z
  .record(z.string().regex(LABEL_KEY_RE, 'invalid label key'), z.string().regex(LABEL_VALUE_RE, 'invalid label value'))
  .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);

/** Identity labels also carry Cilium's namespace-label keys (io.cilium.k8s.namespace.labels.<key>). */
export const identityLabels = z
  .record(z.string().min(1).max(IDENTITY_LABEL_KEY_MAX).regex(IDENTITY_LABEL_KEY_RE, 'invalid label key'), z.string().regex(LABEL_VALUE_RE, 'invalid label value'))
  .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);

/** At most this many container ports per pod (Kubernetes has no limit; ours keeps a record small). */
export const MAX_CONTAINER_PORTS = 64;

/**
 * Why `s` is not an IANA_SVC_NAME (the rule Kubernetes applies to container
 * port names): at most 15 characters, lowercase letters, digits and '-', at
 * least one letter, no '-' at either end, no '--'. undefined: it is one.
 */
export function ianaSvcNameError(s: string): string | undefined {
  if (s.length === 0 || s.length > 15) return 'must be 1-15 characters';
  if (!/^[a-z0-9-]+$/.test(s)) return 'must be lowercase letters, digits and "-"';
  if (!/[a-z]/.test(s)) return 'must contain at least one letter';
  if (s.startsWith('-') || s.endsWith('-')) return 'must not begin or end with "-"';
  if (s.includes('--')) return 'must not contain "--"';
  return undefined;
}

/** A pod's named container port (Kubernetes ContainerPort); protocol defaults to TCP. */
export const containerPort = z
  .object({
    name: z.string().max(15).superRefine((s, ctx) => {
      const why = ianaSvcNameError(s);
      if (why) ctx.addIssue({ code: 'custom', message: `not an IANA service name: ${why}` });
    }),
    containerPort: port,
    protocol: z.enum(['TCP', 'UDP', 'SCTP']).default('TCP'),
  })
  .strict();
export type ContainerPort = z.infer<typeof containerPort>;

/** A pod's container ports: names unique (as Kubernetes requires within a pod). */
export const containerPorts = z
  .array(containerPort)
  .max(MAX_CONTAINER_PORTS)
  .refine((ps) => new Set(ps.map((p) => p.name)).size === ps.length, 'port names must be unique');
