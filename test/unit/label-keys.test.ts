// Label keys against the Kubernetes spec (labels and selectors: a key is an optional prefix, a DNS subdomain of at
// most 253 characters, then `/`, then a name of at most 63: [a-z0-9A-Z], with -_. inside), and identity records
// against what the agent derives from them: every Kubernetes-valid namespace label key, under Cilium's
// io.cilium.k8s.namespace.labels. prefix, must fit an identity record (s14 review: a 300-character prefix passed the
// pod and namespace checks and made an identity no reader took). The expectations come from the spec's lengths.
import { describe, expect, it } from 'vitest';
import { checkPodLabel } from '../../src/agent/labels.js';
import { LABEL_KEY_RE } from '../../src/controlplane/records/fields.js';
import { identityCodec, tryDecode } from '../../src/controlplane/records/index.js';
import { stateKey } from '../../src/controlplane/keys.js';
import { endpointIdentityLabels } from '../../src/identity/identity.js';

const subdomain = (n: number): string => Array.from({ length: Math.ceil(n / 64) }, (_, i) => 'a'.repeat(Math.min(63, n - i * 64))).join('.').slice(0, n);

describe('label keys (Kubernetes: prefix ≤ 253, name ≤ 63)', () => {
  it('takes keys at the spec\'s lengths and refuses one character past either', () => {
    expect(subdomain(253)).toHaveLength(253);
    for (const k of ['app', `${subdomain(253)}/${'n'.repeat(63)}`, 'example.com/team', `${'n'.repeat(63)}`]) expect(LABEL_KEY_RE.test(k), k).toBe(true);
    for (const k of [`${subdomain(254)}/name`, `example.com/${'n'.repeat(64)}`, '/name', 'a/b/c', 'Example.com/x', '']) expect(LABEL_KEY_RE.test(k), k).toBe(false);
    expect(() => checkPodLabel(`${subdomain(254)}/name`, 'v')).toThrow(/invalid label key/);
  });

  it('the longest namespace label key the spec allows fits an identity record (and so do pods\' own)', () => {
    const longest = `${subdomain(253)}/${'n'.repeat(63)}`;
    expect(longest).toHaveLength(317);
    const labels = endpointIdentityLabels({ [longest]: 'v' }, 'prod', 'c1', { [longest]: 'w' });
    const id = 3 * 65536 + 300;
    const r = tryDecode(identityCodec, stateKey('identities', 'c1', String(id)), JSON.stringify({ id, labels }));
    expect(r.ok).toBe(true);
    expect(Math.max(...Object.keys(labels).map((k) => k.length))).toBe(31 + 317);
  });
});
