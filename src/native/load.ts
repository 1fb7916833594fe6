/**
 * Finds and loads one of the C++ addons build/Release/<name>.node (binding.gyp): the product addon
 * (binding.ts) or the test hooks (testhooks.ts). Only those two modules call it.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { HostError } from '../errors.js';

const require = createRequire(import.meta.url);

/** Loads build/Release/<name>.node, found by walking up from this file (src/native or dist/src/native) to the package root. Throws when it is not built. */
export function loadAddon(name: 'wiremesh' | 'wiremesh_testhooks'): unknown {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = join(dir, 'build', 'Release', `${name}.node`);
    if (existsSync(candidate)) return require(candidate);
    dir = dirname(dir);
  }
  throw new HostError('WM_NATIVE_MISSING', `wiremesh native addon ${name}.node not built: run \`npm ci\` (or \`npm run build\`) first`);
}
