import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, MeshError, UapiError, UAPI_EADDRINUSE, UAPI_EINVAL, UAPI_EPROTO } from '../../src/errors.js';

const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
// a documented code is one a table row starts with: | `WM_...` |
const documented = [...doc.matchAll(/^\| `(WM_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]!);

describe('the error catalogue', () => {
  it('docs/errors.md documents every code of src/errors.ts, and no other', () => {
    expect(new Set(ERROR_CODES).size).toBe(ERROR_CODES.length);
    expect(new Set(documented).size).toBe(documented.length);
    expect([...documented].sort()).toEqual([...ERROR_CODES].sort());
  });

  it('codes stay as they were spelled', () => {
    expect(new UapiError(UAPI_EPROTO, 'x').code).toBe('WM_UAPI_PROTOCOL');
    expect(new UapiError(UAPI_EADDRINUSE, 'x').code).toBe('WM_UAPI_PORT_IN_USE');
    expect(new UapiError(UAPI_EINVAL, 'x').code).toBe('WM_UAPI_INVALID');
    const e = new MeshError('WM_ETCD_UNREACHABLE', 'etcd at x: y');
    expect([e.name, e.code, e.message]).toEqual(['MeshError', 'WM_ETCD_UNREACHABLE', 'etcd at x: y']);
  });
});
