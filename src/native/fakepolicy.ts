/**
 * FakeDevice's per-endpoint policy maps (fakedevice.ts): what setEndpointPolicy
 * and policyMapUpdate leave, as readable entries, patched the way the engine's
 * PolicyMap::update patches them (native/src/policy/policymap.cc).
 */
import type { PolicyEntry } from '../policy/compile.js';
import { decodePolicyRows, lookupOrder, PolicyAction, policyRows } from './rows.js';

export interface FakePolicy {
  identity: number;
  ingress: PolicyEntry[] | null;
  egress: PolicyEntry[] | null;
}

export class FakePolicyMaps {
  /** By endpoint id; a null map is "not enforced". */
  readonly byEndpoint = new Map<number, FakePolicy>();

  set(endpoint: number, identity: number, ingress: Buffer | null, egress: Buffer | null): void {
    this.byEndpoint.set(endpoint, { identity, ingress: decodePolicy(ingress), egress: decodePolicy(egress) });
  }

  /** Equal entries removed, upserts after the entries their identity kept; false when the map is not enforced. */
  update(endpoint: number, direction: 'ingress' | 'egress', upserts: Buffer, removes: Buffer): boolean {
    const p = this.byEndpoint.get(endpoint);
    if (!p?.[direction]) return false;
    const gone = new Set(decodePolicyRows(removes).map((r) => JSON.stringify(r)));
    const kept = decodePolicyRows(encodeRows(p[direction])).filter((r) => !gone.has(JSON.stringify(r)));
    p[direction] = decodePolicy(Buffer.concat([policyRows(kept), upserts]));
    return true;
  }

  /** The map's rows in the engine's lookup order, or null when not enforced. */
  entries(endpoint: number, direction: 'ingress' | 'egress'): Buffer | null {
    const cur = this.byEndpoint.get(endpoint)?.[direction];
    return cur ? policyRows(lookupOrder(decodePolicyRows(encodeRows(cur)))) : null;
  }
}

const encodeRows = (es: PolicyEntry[] | null | undefined): Buffer => policyRows((es ?? []).map((e) => ({ ...e, action: e.deny ? PolicyAction.Deny : e.redirect ? PolicyAction.Redirect : PolicyAction.Allow })));

/** The 16-byte policy rows of setEndpointPolicy as the entries they encode (policy/compile.ts encodeEntries). */
function decodePolicy(rows: Buffer | null): PolicyEntry[] | null {
  return rows && decodePolicyRows(rows).map(({ action, ...e }) => ({ ...e, deny: action === PolicyAction.Deny, ...(action === PolicyAction.Redirect ? { redirect: true } : {}) }));
}
