/**
 * The CLI's exit statuses (README, "Exit statuses"): scripts can tell a typo
 * from a missing object from a refused change without reading messages.
 *
 *   0  done (also --help)
 *   1  failed: etcd unreachable, wrong cluster, a record that does not decode, anything unexpected
 *   2  usage: an unknown command, flag or kind, a bad argument or manifest (the message names the field)
 *   3  not found: the object, pod or key named does not exist (delete without --ignore-not-found, get NAME, pod label)
 *   4  conflict: the change needs confirming (pod label on a key that has a value, without --overwrite)
 */
import { WiremeshError } from '../errors.js';

export const EXIT = { ok: 0, failed: 1, usage: 2, notFound: 3, conflict: 4 } as const;

/** The exit status for an error a command threw (commander's own errors included). */
export function exitCodeFor(err: unknown): number {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('commander.')) return (err as { exitCode?: number }).exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (!(err instanceof WiremeshError)) return EXIT.failed;
  if (err.code === 'WM_CONFIG_INVALID') return EXIT.usage;
  if (err.code === 'WM_NOT_FOUND') return EXIT.notFound;
  if (err.code === 'WM_LABEL_EXISTS') return EXIT.conflict;
  return EXIT.failed;
}
