/**
 * A pod's labels and their changes, as `kubectl label` makes them: `k=v` sets
 * (an existing key only with overwrite), `k-` removes (a missing key is a
 * warning, not an error). The agent API applies a change
 * (`PATCH /v1/endpoints/NS/NAME`, body `{labels: {k: "v" | null}, overwrite}`,
 * null removing, as a JSON merge patch does) to its current endpoint, so the
 * check and the change see the same labels; `wiremesh pod label` parses the
 * arguments into that body.
 */
import { ConfigError, LabelExistsError } from '../errors.js';
import { DERIVED_IDENTITY_LABELS, LABEL_KEY_RE, LABEL_VALUE_RE, MAX_LABELS, MAX_NAMESPACE_LABELS, MAX_POD_LABELS } from '../controlplane/records/fields.js';
import { NAMESPACE_LABEL } from '../identity/identity.js';
import { bool, obj, onlyFields } from '../validate.js';

/** A pod label the agent accepts: a valid key that wiremesh does not derive itself, a valid value. Throws ConfigError. */
export function checkPodLabel(k: string, v: unknown): void {
  if (!LABEL_KEY_RE.test(k)) throw new ConfigError(`labels.${k}`, 'invalid label key');
  // these keys are derived (cluster, namespace and its labels): a pod that set them could match namespaceSelectors it is not in
  if (k.startsWith('io.cilium.k8s.') || k === NAMESPACE_LABEL) throw new ConfigError(`labels.${k}`, 'is set by wiremesh from the cluster and namespace, not by the pod');
  if (typeof v !== 'string' || !LABEL_VALUE_RE.test(v)) throw new ConfigError(`labels.${k}`, `invalid label value ${JSON.stringify(v)}`);
}

/** Label changes: a value sets the key, null removes it. */
export type LabelPatch = Record<string, string | null>;

/** `k=v ... k- ...` as kubectl label takes them. Throws ConfigError naming the argument. */
export function parseLabelArgs(args: string[]): LabelPatch {
  if (args.length === 0) throw new ConfigError('LABELS', 'at least one label update is required (k=v sets, k- removes)');
  const patch: LabelPatch = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    const [k, v] = eq >= 0 ? [a.slice(0, eq), a.slice(eq + 1)] : a.endsWith('-') ? [a.slice(0, -1), null] : [a, undefined];
    if (v === undefined) throw new ConfigError('LABELS', `${JSON.stringify(a)} is neither k=v nor k-`);
    if (k in patch) throw new ConfigError('LABELS', `${JSON.stringify(k)} is changed twice (set and removed, or set twice)`);
    if (v === null) {
      if (!LABEL_KEY_RE.test(k)) throw new ConfigError(`labels.${k}`, 'invalid label key');
    } else checkPodLabel(k, v);
    patch[k] = v;
  }
  return patch;
}

/** Checks a PATCH body: {labels: {k: string | null}, overwrite?: boolean}. Throws ConfigError. */
export function validateLabelPatch(body: unknown): { patch: LabelPatch; overwrite: boolean } {
  const b = obj(body, '(body)', 'must be a JSON object');
  onlyFields(b, '', ['labels', 'overwrite'], 'allowed:');
  const overwrite = bool(b.overwrite, 'overwrite', false);
  const l = obj(b.labels, 'labels', 'must be a map of key to value (or null: remove)');
  const patch: LabelPatch = {};
  for (const [k, v] of Object.entries(l)) {
    if (v === null) {
      if (!LABEL_KEY_RE.test(k)) throw new ConfigError(`labels.${k}`, 'invalid label key');
    } else checkPodLabel(k, v);
    patch[k] = v as string | null;
  }
  return { patch, overwrite };
}

/**
 * The labels after the patch, and warnings for keys removed that were not
 * there. Throws LabelExistsError for a key that has a value (even the same
 * one, as kubectl) without overwrite, ConfigError past MAX_LABELS.
 */
export function applyLabelPatch(current: Record<string, string>, patch: LabelPatch, overwrite: boolean): { labels: Record<string, string>; warnings: string[] } {
  const labels = { ...current };
  const warnings: string[] = [];
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) {
      if (k in labels) delete labels[k];
      else warnings.push(`label "${k}" not found.`);
      continue;
    }
    if (k in labels && !overwrite) throw new LabelExistsError(k, labels[k]!);
    labels[k] = v;
  }
  if (Object.keys(labels).length > MAX_POD_LABELS) throw new ConfigError('labels', `at most ${MAX_POD_LABELS} labels (with its namespace's ${MAX_NAMESPACE_LABELS} and ${DERIVED_IDENTITY_LABELS} derived ones, its identity holds at most ${MAX_LABELS})`);
  return { labels, warnings };
}
