/**
 * Field schemas every record shares: names, addresses, prefixes, labels,
 * with the limits that keep one record small (docs/security.md, "Bounds").
 */
import { z } from 'zod';
import { formatIP, parseIP, parsePrefix } from '../../net/ip.js';

export const CLUSTER_NAME_RE = /^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$/;
/** Kubernetes label key (optional DNS prefix, then a name) and value. */
export const LABEL_KEY_RE = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
export const LABEL_VALUE_RE = /^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$/;
/** A DNS-1123 label: node, namespace and pod names. */
export const DNS_LABEL_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export const MAX_LABELS = 64;
export const MAX_ADDRESSES = 16;
export const MAX_CIDRS = 16;

export const clusterName = z.string().regex(CLUSTER_NAME_RE, 'must be 1-32 characters of lowercase letters, digits and "-"');
/** Cluster ids 1..255 (docs/architecture.md). */
export const clusterId = z.number().int().min(1).max(255);
/** Node names: DNS-1123 subdomain-ish, no slash (they are key segments). */
export const nodeName = z.string().min(1).max(253).regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'must be a DNS name');
export const dnsLabel = z.string().regex(DNS_LABEL_RE, 'must be a DNS-1123 label');
export const port = z.number().int().min(1).max(65535);

/**
 * An address in its one canonical text (readers compare addresses as
 * strings: "fe80:0::1" must not pass for another address than "fe80::1"),
 * and no IPv4-mapped IPv6 (::ffff:a.b.c.d would dodge IPv4 checks).
 */
export const ipAddress = z
  .string()
  .max(64)
  .refine((s) => {
    const a = parseIP(s);
    if (!a || formatIP(a) !== s) return false;
    return !(a.length === 16 && a.subarray(0, 10).every((x) => x === 0) && a[10] === 0xff && a[11] === 0xff);
  }, 'not an IP address in canonical form');
export const cidr = z
  .string()
  .max(64)
  .refine((s) => {
    if (!s.includes('/')) return false;
    try {
      parsePrefix(s);
      return true;
    } catch {
      return false;
    }
  }, 'not a CIDR');

export const labels = z
  .record(z.string().regex(LABEL_KEY_RE, 'invalid label key'), z.string().regex(LABEL_VALUE_RE, 'invalid label value'))
  .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);

/** Identity labels also carry Cilium's namespace-label keys (io.cilium.k8s.namespace.labels.<key>). */
export const identityLabels = z
  .record(z.string().min(1).max(317).regex(/^[A-Za-z0-9][-A-Za-z0-9_./]*$/, 'invalid label key'), z.string().regex(LABEL_VALUE_RE, 'invalid label value'))
  .refine((l) => Object.keys(l).length <= MAX_LABELS, `at most ${MAX_LABELS} labels`);
