/**
 * `wiremesh get` output: a table as kubectl prints one (NAMESPACE with -A,
 * NAME, the kind's own columns, REVISION: the etcd revision that last
 * changed the object, in place of kubectl's AGE, which manifests do not
 * record), `-o wide` adds LABELS; `-o json|yaml` prints the decoded objects
 * (one object for a NAME, else a `v1 List`, as kubectl does).
 */
import { stringify } from 'yaml';
import { ConfigError } from '../errors.js';
import type { StoredObject } from '../manifests/store.js';

export const OUTPUTS = ['table', 'wide', 'json', 'yaml'] as const;
export type Output = (typeof OUTPUTS)[number];

export function parseOutput(v: string | undefined): Output {
  const o = v ?? 'table';
  if (!(OUTPUTS as readonly string[]).includes(o)) throw new ConfigError('--output', `must be one of yaml, json, wide (got ${JSON.stringify(o)})`);
  return o as Output;
}

type Selector = { matchLabels?: Record<string, string>; matchExpressions?: Array<{ key: string; operator: string; values?: string[] }> };

/** A label selector as kubectl prints one (metav1.FormatLabelSelector): `app=web,tier in (a,b),!legacy`; `<none>` for {}. */
export function formatSelector(s: Selector | undefined): string {
  if (!s) return '<none>';
  const parts = Object.entries(s.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of s.matchExpressions ?? []) {
    const vals = `(${(e.values ?? []).join(',')})`;
    if (e.operator === 'In') parts.push(`${e.key} in ${vals}`);
    else if (e.operator === 'NotIn') parts.push(`${e.key} notin ${vals}`);
    else if (e.operator === 'Exists') parts.push(e.key);
    else parts.push(`!${e.key}`);
  }
  return parts.length ? parts.join(',') : '<none>';
}

const labelsText = (l: Record<string, string> | undefined) => (l && Object.keys(l).length ? Object.entries(l).map(([k, v]) => `${k}=${v}`).join(',') : '<none>');

/** The kind's own columns (kubectl's, where it has them). */
function kindColumns(kind: string): Array<[string, (o: StoredObject) => string]> {
  const spec = (o: StoredObject) => (o.manifest.spec ?? {}) as Record<string, unknown>;
  switch (kind) {
    case 'Service':
      return [
        ['CLUSTER-IP', (o) => String(spec(o).clusterIP ?? '<none>')],
        ['PORT(S)', (o) => ((spec(o).ports ?? []) as Array<{ port: number; protocol?: string }>).map((p) => `${p.port}/${p.protocol ?? 'TCP'}`).join(',')],
        ['GLOBAL', (o) => o.manifest.metadata.annotations?.['service.cilium.io/global'] ?? 'false'],
      ];
    case 'NetworkPolicy':
      return [['POD-SELECTOR', (o) => formatSelector(spec(o).podSelector as Selector)]];
    case 'CiliumNetworkPolicy':
    case 'CiliumClusterwideNetworkPolicy':
      return [['ENDPOINT-SELECTOR', (o) => (o.manifest.spec ? formatSelector(spec(o).endpointSelector as Selector) : `${o.manifest.specs?.length ?? 0} specs`)]];
    default:
      return [];
  }
}

/** Lines of the table (header first; none when there is nothing, the caller says so). */
export function formatTable(kind: string, items: StoredObject[], opts: { allNamespaces: boolean; namespaced: boolean; wide: boolean }): string[] {
  if (items.length === 0) return [];
  const cols: Array<[string, (o: StoredObject) => string]> = [
    ...(opts.allNamespaces && opts.namespaced ? [['NAMESPACE', (o: StoredObject) => o.manifest.metadata.namespace ?? ''] as [string, (o: StoredObject) => string]] : []),
    ['NAME', (o) => o.manifest.metadata.name],
    ...kindColumns(kind),
    ['REVISION', (o) => String(o.revision)],
    ...(opts.wide ? [['LABELS', (o: StoredObject) => labelsText(o.manifest.metadata.labels)] as [string, (o: StoredObject) => string]] : []),
  ];
  const rows = [cols.map(([h]) => h), ...items.map((o) => cols.map(([, f]) => f(o)))];
  const widths = cols.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]! + 3))).join(''));
}

/** -o json / yaml: the decoded object for a NAME, else a List of them. */
export function formatObjects(items: StoredObject[], single: boolean, format: 'json' | 'yaml'): string {
  const value = single ? items[0]!.manifest : { apiVersion: 'v1', kind: 'List', items: items.map((o) => o.manifest) };
  return format === 'json' ? JSON.stringify(value, null, 2) : stringify(value).trimEnd();
}
