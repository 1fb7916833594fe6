/**
 * The local endpoints saved next to the node's key (`<key>.endpoints.json`, 0600), so that a restarted
 * agent, even after kill -9, registers them again before the old lease expires.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Logger } from '../log.js';
import { validateEndpoint, type LocalEndpoint } from './endpoint.js';

/**
 * Next to the key and named after it: nodes of different clusters may share
 * a name and a key directory (the testbed's do), never a key file.
 */
export function endpointFileOf(privateKeyFile: string): string {
  return `${privateKeyFile}.endpoints.json`;
}

/** The endpoints saved by an earlier run (each checked as the API checks it; an unreadable one is skipped and logged). */
export function loadEndpointFile(file: string, log: Logger): LocalEndpoint[] {
  if (!existsSync(file)) return [];
  const out: LocalEndpoint[] = [];
  try {
    const saved: unknown = JSON.parse(readFileSync(file, 'utf8'));
    for (const [i, raw] of (Array.isArray(saved) ? saved : []).entries()) {
      try {
        out.push(validateEndpoint(raw));
      } catch (err) {
        log.warn({ file, index: i, err: (err as Error).message }, 'skipping an unreadable saved endpoint');
      }
    }
  } catch (err) {
    log.warn({ file, err: (err as Error).message }, 'ignoring unreadable endpoint state');
  }
  return out;
}

export function saveEndpointFile(file: string, endpoints: Iterable<LocalEndpoint>): void {
  writeFileSync(file, JSON.stringify([...endpoints], null, 1), { mode: 0o600 });
}
