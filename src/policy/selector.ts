/**
 * Kubernetes label selectors (matchLabels, matchExpressions with In, NotIn,
 * Exists, DoesNotExist) over identity labels. Cilium's source prefixes on keys
 * (`k8s:app`, `any:app`) are accepted and ignored; `reserved:` keys select
 * reserved identities.
 */
import type { Labels } from '../identity/identity.js';

export interface SelectorExpression {
  key: string;
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist';
  values?: string[];
}

export interface LabelSelector {
  matchLabels?: Record<string, string>;
  matchExpressions?: SelectorExpression[];
}

/** A selector in normal form: keys without source prefixes. */
export interface Selector {
  labels: Array<[string, string]>;
  expressions: Array<{ key: string; operator: SelectorExpression['operator']; values: Set<string> }>;
}

export function normalizeKey(key: string): string {
  if (key.startsWith('k8s:')) return key.slice(4);
  if (key.startsWith('any:')) return key.slice(4);
  return key;
}

export function compileSelector(s: LabelSelector | undefined): Selector {
  return {
    labels: Object.entries(s?.matchLabels ?? {}).map(([k, v]) => [normalizeKey(k), v]),
    expressions: (s?.matchExpressions ?? []).map((e) => ({ key: normalizeKey(e.key), operator: e.operator, values: new Set(e.values ?? []) })),
  };
}

export function selectorMentions(s: Selector, key: string): boolean {
  return s.labels.some(([k]) => k === key) || s.expressions.some((e) => e.key === key);
}

/** Adds `key=value` as a requirement (namespace or cluster defaults). */
export function requireLabel(s: Selector, key: string, value: string): Selector {
  return { labels: [...s.labels, [key, value]], expressions: s.expressions };
}

export function matches(s: Selector, labels: Labels): boolean {
  for (const [k, v] of s.labels) if (labels[k] !== v) return false;
  for (const e of s.expressions) {
    const has = Object.prototype.hasOwnProperty.call(labels, e.key);
    switch (e.operator) {
      case 'In':
        if (!has || !e.values.has(labels[e.key]!)) return false;
        break;
      case 'NotIn':
        if (has && e.values.has(labels[e.key]!)) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
    }
  }
  return true;
}

export function describeSelector(s: Selector): string {
  const parts = s.labels.map(([k, v]) => `${k}=${v}`);
  for (const e of s.expressions) {
    if (e.operator === 'Exists') parts.push(e.key);
    else if (e.operator === 'DoesNotExist') parts.push(`!${e.key}`);
    else parts.push(`${e.key} ${e.operator === 'In' ? 'in' : 'notin'} (${[...e.values].join(',')})`);
  }
  return parts.length ? parts.join(',') : '(all)';
}
