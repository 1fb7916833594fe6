/**
 * Names derived from user names where some limit applies (interface names 15
 * bytes, UNIX socket paths 107, an X.509 common name 64 characters): the
 * name as it is when it fits, else its first characters, "_" and 8 hex
 * digits of SHA-256 of the whole name. Users' names are Kubernetes' and
 * Cilium's (clusters up to 32 characters, nodes and pods DNS labels up to
 * 63), so derived names must be shortened somewhere. "_" never occurs in a DNS
 * label, so a shortened name never equals one that fitted; the digest keeps
 * two long names with a common prefix apart, and the same name always maps to
 * the same result (runs, restarts and re-issued credentials agree).
 */
import { createHash } from 'node:crypto';

/**
 * prefix + name when that is at most `max` characters (ASCII), else prefix +
 * name's start + "_" + `digits` hex digits (8 by default: names local to one
 * node; a name that grants rights, such as an etcd user, takes more).
 */
export function boundedName(prefix: string, name: string, max: number, digits = 8): string {
  const whole = `${prefix}${name}`;
  if (whole.length <= max) return whole;
  const keep = max - prefix.length - 1 - digits;
  // assertion: prefixes are constants in the code, none this long; no user input reaches this
  if (keep < 0) throw new Error(`${JSON.stringify(prefix)} leaves no room for a name within ${max} characters`);
  return `${prefix}${name.slice(0, keep)}_${createHash('sha256').update(name).digest('hex').slice(0, digits)}`;
}
