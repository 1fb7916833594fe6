/**
 * Named ports: pods declare container ports ({name, containerPort,
 * protocol}); a rule naming a port resolves per pod, as Kubernetes does —
 * ingress against the selected pod's own ports, egress against each
 * destination pod's ports.
 *
 * Identities are per label set, not per pod: an egress entry is
 * (identity, protocol, port), so a name resolves for an identity only to the
 * numbers every endpoint holding it agrees on (the intersection). Replicas
 * that declare a name differently thus allow none of their numbers through
 * it: fail closed, never a number one of them did not name.
 */
import { ConfigError } from '../errors.js';
import { containerPorts, type ContainerPort } from '../controlplane/records/fields.js';

export type { ContainerPort };

const PROTO_NUMBER: Record<ContainerPort['protocol'], number> = { TCP: 6, UDP: 17, SCTP: 132 };

/** A resolved port: protocol number and port. */
export interface ResolvedPort {
  proto: number;
  port: number;
}

/** The numbers `name` stands for among `ports` for a rule's protocol (0 = any). */
export function resolveNamedPort(ports: readonly ContainerPort[], name: string, proto: number): ResolvedPort[] {
  const out: ResolvedPort[] = [];
  for (const p of ports) if (p.name === name && (proto === 0 || PROTO_NUMBER[p.protocol] === proto)) out.push({ proto: PROTO_NUMBER[p.protocol], port: p.containerPort });
  return out;
}

/** What several endpoints (one identity) all resolve `name` to: the intersection; none for no endpoints. */
export function resolveNamedPortAll(portSets: ReadonlyArray<readonly ContainerPort[]>, name: string, proto: number): ResolvedPort[] {
  let acc: ResolvedPort[] | undefined;
  for (const ps of portSets) {
    const r = resolveNamedPort(ps, name, proto);
    acc = acc === undefined ? r : acc.filter((a) => r.some((b) => b.proto === a.proto && b.port === a.port));
    if (acc.length === 0) return [];
  }
  return acc ?? [];
}

/**
 * Container ports from untrusted input (agent API body, topology file):
 * `[{name, containerPort, protocol?}]`. Throws ConfigError naming the field
 * (`<field>[i].name`).
 */
export function parseContainerPorts(v: unknown, field = 'ports'): ContainerPort[] {
  if (v === undefined) return [];
  const r = containerPorts.safeParse(v);
  if (r.success) return r.data;
  const i = r.error.issues[0]!;
  const path = i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
  throw new ConfigError(`${field}${path}`, i.message);
}

/** `NAME:PORT[/PROTO]` (wiremesh pod add --port), e.g. `serve-80-tcp:80/TCP`. Throws ConfigError. */
export function parsePortFlag(text: string, field = '--port'): ContainerPort {
  const m = /^([^:]+):(\d{1,5})(?:\/([A-Za-z]+))?$/.exec(text);
  if (!m) throw new ConfigError(field, `"${text}" is not NAME:PORT[/PROTO] (e.g. serve-80-tcp:80/TCP)`);
  const [p] = parseContainerPorts([{ name: m[1], containerPort: Number(m[2]), ...(m[3] ? { protocol: m[3].toUpperCase() } : {}) }], field);
  return p!;
}

/** Parses the repeatable flag's values into a pod's ports (names unique). */
export function parsePortFlags(texts: readonly string[]): ContainerPort[] {
  return parseContainerPorts(texts.map((t) => parsePortFlag(t)), '--port');
}
