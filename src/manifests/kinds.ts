/**
 * Kinds as users type them on the command line (`wiremesh get|delete KIND`):
 * case-insensitive, singular or plural, optionally with the API group
 * (`networkpolicies.networking.k8s.io`), or kubectl's standard short name.
 * Everything is derived from the kind table of validate.ts (KINDS), so a kind
 * added there is addressable here without an edit; only short names and the
 * scope of cluster-scoped kinds are listed, as kubectl's discovery lists them.
 */
import { ConfigError } from '../errors.js';
import { KINDS, manifestName, type Manifest } from './validate.js';
import { DNS_LABEL_RE } from '../controlplane/records/fields.js';
import type { StateType } from '../controlplane/keys.js';

/** kubectl's short names (`kubectl api-resources`; cnp/ccnp from Cilium's CRDs). */
const SHORT_NAMES: Record<string, string> = {
  svc: 'Service',
  netpol: 'NetworkPolicy',
  cnp: 'CiliumNetworkPolicy',
  ccnp: 'CiliumClusterwideNetworkPolicy',
  ns: 'Namespace',
};

/** Kinds without a namespace (their objects are named by name alone). */
const CLUSTER_SCOPED = new Set(['CiliumClusterwideNetworkPolicy', 'Namespace']);

/** The resource (plural, lowercase) of a kind, as Kubernetes names it: Service -> services, NetworkPolicy -> networkpolicies. */
export function pluralOf(kind: string): string {
  const k = kind.toLowerCase();
  if (k.endsWith('y')) return `${k.slice(0, -1)}ies`;
  if (k.endsWith('s')) return `${k}es`;
  return `${k}s`;
}

export const isClusterScoped = (kind: string): boolean => CLUSTER_SCOPED.has(kind);

/**
 * The kind a user means by `text` (one of KINDS). Throws ConfigError (field
 * `KIND`) listing what is accepted.
 */
export function resolveKind(text: string): string {
  const lower = text.toLowerCase();
  const short = SHORT_NAMES[lower];
  if (short && short in KINDS) return short;
  for (const [kind, apiVersion] of Object.entries(KINDS)) {
    const group = apiVersion.includes('/') ? apiVersion.slice(0, apiVersion.indexOf('/')) : '';
    for (const name of [kind.toLowerCase(), pluralOf(kind)]) if (lower === name || (group && lower === `${name}.${group}`)) return kind;
  }
  const shorts = Object.entries(SHORT_NAMES).filter(([, k]) => k in KINDS).map(([s]) => s);
  throw new ConfigError('KIND', `unknown kind ${JSON.stringify(text)} (known: ${Object.keys(KINDS).map(pluralOf).join(', ')}; short: ${shorts.join(', ')})`);
}

/** What names one stored object: its kind, name and (for namespaced kinds) namespace. */
export interface ObjectRef {
  kind: string;
  name: string;
  namespace?: string;
}

/** A reference checked as the API server would: DNS-1123 names, a namespace only for namespaced kinds. */
export function objectRef(kind: string, name: string, namespace: string | undefined): ObjectRef {
  if (!DNS_LABEL_RE.test(name)) throw new ConfigError('NAME', `${JSON.stringify(name)} is not a DNS-1123 label`);
  if (isClusterScoped(kind)) return { kind, name };
  const ns = namespace ?? 'default';
  if (!DNS_LABEL_RE.test(ns)) throw new ConfigError('--namespace', `${JSON.stringify(ns)} is not a DNS-1123 label`);
  return { kind, name, namespace: ns };
}

export const refOf = (m: Manifest): ObjectRef => ({ kind: m.kind, name: m.metadata.name, ...(isClusterScoped(m.kind) ? {} : { namespace: m.metadata.namespace ?? 'default' }) });

/** Where a reference is stored: the same mapping apply uses (validate.ts manifestName). */
export function storeName(ref: ObjectRef): { type: StateType; name: string } {
  const stub = { apiVersion: KINDS[ref.kind]!, kind: ref.kind as Manifest['kind'], metadata: { name: ref.name, ...(ref.namespace ? { namespace: ref.namespace } : {}) } };
  return manifestName(stub);
}

/** How an object is named in output: `kind/namespace/name` (as apply prints it). */
export const describeRef = (ref: ObjectRef): string => `${ref.kind.toLowerCase()}/${ref.namespace ? `${ref.namespace}/` : ''}${ref.name}`;
