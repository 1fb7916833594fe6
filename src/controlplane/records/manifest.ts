/**
 * Services, policies and namespaces: the manifests `wiremesh apply` stored, decoded by the
 * same validator apply uses (src/manifests/validate.ts), so what an agent
 * enforces is exactly what apply accepted. Larger limit: a policy may be long.
 */
import { ConfigError } from '../../errors.js';
import { manifestName, validateManifest, type Manifest } from '../../manifests/validate.js';
import { RecordError, parseJson, type Codec } from './codec.js';
import { stateLocation } from './location.js';
import type { StateType } from '../keys.js';

export const MANIFEST_MAX_BYTES = 256 * 1024;

function manifestCodec(type: 'service' | 'policy' | 'namespace'): Codec<Manifest> {
  const stateType = type === 'service' ? 'services' : type === 'policy' ? 'policies' : 'namespaces';
  return {
    type,
    maxBytes: MANIFEST_MAX_BYTES,
    decode(key, value) {
      const raw = parseJson(type, key, value, MANIFEST_MAX_BYTES);
      let m: Manifest;
      try {
        m = validateManifest(raw);
      } catch (err) {
        throw new RecordError(type, key, 'schema', err instanceof ConfigError ? err.message : `invalid: ${(err as Error).message}`);
      }
      const want = manifestName(m);
      if (want.type !== stateType) throw new RecordError(type, key, 'schema', `a ${m.kind} is not a ${type}`);
      const loc = stateLocation(stateType, key);
      if (!loc || loc.name !== want.name) throw new RecordError(type, key, 'key', `the key names "${loc?.name ?? '?'}", the manifest is "${want.name}"`);
      return m;
    },
    encode: (m) => JSON.stringify(m),
  };
}

export const serviceCodec = manifestCodec('service');
export const policyCodec = manifestCodec('policy');
/** state/namespaces/v1/<cluster>/<name>: a v1 Namespace (local to its cluster). */
export const namespaceCodec = manifestCodec('namespace');

/** The codec of each state type that holds manifests (`wiremesh get` decodes through these). */
export const manifestCodecs: Partial<Record<StateType, Codec<Manifest>>> = { services: serviceCodec, policies: policyCodec, namespaces: namespaceCodec };
