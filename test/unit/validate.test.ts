import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { bool, cidr, etcdEndpoint, int, list, obj, oneOf, onlyFields, strList } from '../../src/validate.js';

/** The ConfigError a check throws, as "field: reason". */
function message(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('no error');
}

describe('the validation toolkit', () => {
  it('names the field path and the reason', () => {
    expect(message(() => obj([], 'a.b'))).toBe('a.b: must be a mapping');
    expect(message(() => list({}, 'a', 'must be a list of pairs'))).toBe('a: must be a list of pairs');
    expect(message(() => strList(['x', ''], 'etcd.endpoints'))).toBe('etcd.endpoints[1]: must be a non-empty string');
    expect(message(() => int(0, 'ttl', 1, 3600, 5, 'seconds'))).toBe('ttl: must be an integer in 1..3600 (seconds)');
    expect(message(() => bool('yes', 'policy.enabled', true))).toBe('policy.enabled: must be true or false');
    expect(message(() => oneOf('IP', 'protocol', ['TCP', 'UDP']))).toBe('protocol: must be one of TCP, UDP');
    expect(message(() => onlyFields({ a: 1, z: 2 }, 'spec', ['a'], 'allowed:'))).toBe('spec.z: unknown field (allowed: a)');
    expect(message(() => onlyFields({ z: 2 }, '', ['a', 'b'], 'expected one of'))).toBe('z: unknown field (expected one of a, b)');
    expect(message(() => cidr('100.64.0.0', 'x'))).toBe('x: must be a CIDR like 100.64.0.0/10');
    expect(message(() => etcdEndpoint('http://e:2379/x', 'etcd.endpoints[0]'))).toBe('etcd.endpoints[0]: "http://e:2379/x" must be http(s)://host:port');
  });

  it('returns the value, or the default when absent', () => {
    expect(int(undefined, 'p', 1, 65535, 53)).toBe(53);
    expect(bool(undefined, 'b', false)).toBe(false);
    expect(cidr('100.64.0.0', 'x', 'r', false).cidr).toBe(32);
    expect(oneOf('UDP', 'protocol', ['TCP', 'UDP'])).toBe('UDP');
  });
});
