/**
 * The error catalogue: every stable code wiremesh throws, and one class per
 * code family (as undici does). Callers and tests match on `code`, never on
 * message text, so messages can improve without breaking them; the CLI maps a
 * few codes to exit statuses (src/cli/exitcodes.ts). docs/errors.md says what
 * each code means and what to do about it (test/unit/errors.test.ts keeps the
 * two lists equal).
 *
 * A plain `Error` left in src/ is a programming assertion (it says so where it
 * is thrown): nothing a user does can reach it.
 */

/** A configuration value, manifest field, API body field or CLI flag is invalid (CLI exit status 2, agent API 400). */
export const CONFIG_CODES = ['WM_CONFIG_INVALID'] as const;
/** What a command or API request names: missing, taken, or needing confirmation. */
export const REQUEST_CODES = ['WM_NOT_FOUND', 'WM_LABEL_EXISTS', 'WM_ENDPOINT_CONFLICT'] as const;
/** Data from a peer process or the store refused: the message or record is dropped, the sender's others go on. */
export const REJECT_CODES = ['WM_HANDSHAKE_REJECTED', 'WM_RECORD_REJECTED', 'WM_PROXY_MESSAGE_REJECTED'] as const;
/** The UAPI socket refused a `set` request (answered to `wg` as errno). */
export const UAPI_CODES = ['WM_UAPI_PROTOCOL', 'WM_UAPI_PORT_IN_USE', 'WM_UAPI_INVALID'] as const;
/** The cluster mesh's etcd state: reaching it, its cluster configs, identities, concurrent writers. */
export const MESH_CODES = [
  'WM_ETCD_UNREACHABLE',
  'WM_ETCD_TLS',
  'WM_CLUSTER_MISMATCH',
  'WM_CLUSTER_ID_CHANGED',
  'WM_CLUSTER_NOT_ENABLED',
  'WM_CLUSTER_CONFIG_INVALID',
  'WM_DUPLICATE_CLUSTER_NAME',
  'WM_DUPLICATE_CLUSTER_ID',
  'WM_MAX_CLUSTERS_MISMATCH',
  'WM_POD_CIDR_OVERLAP',
  'WM_UNDERLAY_CIDRS_MISSING',
  'WM_UNDERLAY_CIDR_OVERLAP',
  'WM_SERVICE_CIDR_OVERLAP',
  'WM_SERVICE_CIDR_IN_USE',
  'WM_RELAY_CIDR_INVALID',
  'WM_RBAC',
  'WM_WRONG_CLUSTER',
  'WM_DELETE_RACE',
  'WM_VIP_RACE',
  'WM_CONNECT_RACE',
  'WM_NO_CODEC',
  'WM_PKI',
  'WM_IDENTITY_ALLOCATION',
  'WM_IDENTITY_EXHAUSTED',
] as const;
/** Talking to an agent's API socket, and `policy trace` questions. */
export const AGENT_CODES = ['WM_AGENT_API', 'WM_AGENT_ANSWER', 'WM_TRACE_UNKNOWN', 'WM_TRACE_PROTOCOL'] as const;
/** The host lacks or refuses something: a port, a socket, the native addon, nft, a key file, chromium. */
export const HOST_CODES = ['WM_PORT_IN_USE', 'WM_UAPI_IN_USE', 'WM_NATIVE_MISSING', 'WM_NFT_ANSWER', 'WM_KEY_INVALID', 'WM_UI_SCREENSHOT'] as const;
/** The testbed (network namespaces on one machine), its demo and the chaos runner. */
export const TESTBED_CODES = [
  'WM_NOT_ROOT',
  'WM_TESTBED_EXISTS',
  'WM_TESTBED_NONE',
  'WM_TESTBED_TARGET',
  'WM_TESTBED_CLI',
  'WM_TESTBED_TIMEOUT',
  'WM_TESTBED_LATENCY',
  'WM_TESTBED_ETCD',
  'WM_POD_REGISTER',
  'WM_DEMO_FAILED',
] as const;

/** Every stable code (docs/errors.md). */
export const ERROR_CODES = [...CONFIG_CODES, ...REQUEST_CODES, ...REJECT_CODES, ...UAPI_CODES, ...MESH_CODES, ...AGENT_CODES, ...HOST_CODES, ...TESTBED_CODES] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];
export type UapiErrorCode = (typeof UAPI_CODES)[number];
export type MeshErrorCode = (typeof MESH_CODES)[number];
export type AgentErrorCode = (typeof AGENT_CODES)[number];
export type HostErrorCode = (typeof HOST_CODES)[number];
export type TestbedErrorCode = (typeof TESTBED_CODES)[number];

export class WiremeshError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A configuration value (UAPI key, config file field, CLI flag) is invalid. */
export class ConfigError extends WiremeshError {
  declare readonly code: 'WM_CONFIG_INVALID';
  readonly field: string;
  constructor(field: string, reason: string) {
    super('WM_CONFIG_INVALID', `${field}: ${reason}`);
    this.field = field;
  }
}

/** The object a command names does not exist (CLI exit status 3, agent API 404). */
export class NotFoundError extends WiremeshError {
  declare readonly code: 'WM_NOT_FOUND';
  constructor(message: string) {
    super('WM_NOT_FOUND', message);
  }
}

/** A label key already has a value and the request did not say to overwrite it (CLI exit status 4, agent API 409). */
export class LabelExistsError extends WiremeshError {
  declare readonly code: 'WM_LABEL_EXISTS';
  constructor(readonly key: string, value: string) {
    super('WM_LABEL_EXISTS', `'${key}' already has a value (${value}), and --overwrite is false`);
  }
}

/** An endpoint claims addresses another endpoint holds (agent API: 409; `replace: true` takes them over). */
export class EndpointConflictError extends WiremeshError {
  declare readonly code: 'WM_ENDPOINT_CONFLICT';
  constructor(readonly holders: Array<{ ip: string; cluster: string; node: string; endpoint: string }>) {
    super('WM_ENDPOINT_CONFLICT', `address ${holders.map((h) => `${h.ip} is held by ${h.cluster}/${h.node}/${h.endpoint}`).join('; ')} (replace: true takes it over)`);
  }
}

/** A handshake message failed validation; the message is dropped. */
export class HandshakeError extends WiremeshError {
  declare readonly code: 'WM_HANDSHAKE_REJECTED';
  constructor(reason: string) {
    super('WM_HANDSHAKE_REJECTED', reason);
  }
}

/**
 * The replicated record types (src/controlplane/records/codec.ts decodes each), and sync-marker
 * (wiremesh/synced/<remote>/<type>: no codec, only the key is read; a key or value the store refuses is counted
 * under it).
 */
export type RecordType =
  | 'node'
  | 'endpoint'
  | 'identity'
  | 'identity-ref'
  | 'identity-index'
  | 'service'
  | 'policy'
  | 'namespace'
  | 'relay'
  | 'gateway'
  | 'heartbeat'
  | 'cluster-config'
  | 'health'
  | 'remote-status'
  | 'remote'
  | 'pinned-cluster'
  | 'sync-marker';

/**
 * Why a record was refused. Stable, few values: they label metrics.
 *   too-large  over the type's byte limit      not-json   not a JSON document
 *   schema     fields of wrong type or range   key        the key disagrees with the value
 *   claim      says something its origin may not (another cluster's id, CIDR, labels)
 *   conflict   overlaps a record already admitted (a pod CIDR, an address)
 *   budget     over a bound on how many: a remote's records, bytes or nodes (kvstoremesh), a node's endpoints (agent)
 */
export type RejectReason = 'too-large' | 'not-json' | 'schema' | 'key' | 'claim' | 'conflict' | 'budget';

/** Why a message from the proxy process was refused (labels a metric: few, stable). */
export type ProxyRejectReason = 'not-json' | 'too-large' | 'schema' | 'records' | 'kind';

/** A stored record was refused (src/controlplane/records/codec.ts): the reader drops that one record and goes on. */
export class RecordError extends WiremeshError {
  declare readonly code: 'WM_RECORD_REJECTED';
  constructor(
    readonly type: RecordType,
    readonly key: string,
    readonly reason: RejectReason,
    readonly detail: string,
  ) {
    super('WM_RECORD_REJECTED', `${type} ${key}: ${reason}: ${detail}`);
  }

  /**
   * One without a stack trace: a refusal is about a record, not the code (its key and detail say all), and the
   * trace was most of its cost (~15 µs; a node over its endpoint bound by 200,000 has as many refused,
   * bench/admission-quota.ts).
   */
  static quiet(type: RecordType, key: string, reason: RejectReason, detail: string): RecordError {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new RecordError(type, key, reason, detail);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}

/** A message from the L7 proxy process was refused (src/proxy/messages.ts). */
export class ProxyMessageError extends WiremeshError {
  declare readonly code: 'WM_PROXY_MESSAGE_REJECTED';
  constructor(
    readonly reason: ProxyRejectReason,
    readonly detail: string,
  ) {
    super('WM_PROXY_MESSAGE_REJECTED', `${reason}: ${detail}`);
  }
}

/** errno values as wireguard-go reports them on the UAPI socket (negated Linux errnos). */
export const UAPI_EIO = -5;
export const UAPI_EINVAL = -22;
export const UAPI_EADDRINUSE = -98;
export const UAPI_EPROTO = -71;

/** A UAPI request refused with `errno` (src/wireguard/uapi.ts); the code follows the errno. */
export class UapiError extends WiremeshError {
  declare readonly code: UapiErrorCode;
  constructor(readonly errno: number, message: string) {
    super(errno === UAPI_EPROTO ? 'WM_UAPI_PROTOCOL' : errno === UAPI_EADDRINUSE ? 'WM_UAPI_PORT_IN_USE' : 'WM_UAPI_INVALID', message);
  }
}

/** The base of a family class: its instances take that family's codes only. */
function codeFamily<C extends ErrorCode>() {
  return class extends WiremeshError {
    declare readonly code: C;
    constructor(code: C, message: string) {
      super(code, message);
    }
  };
}

/** The cluster mesh's etcd state (clustermesh, apply/delete, identities, PKI). */
export class MeshError extends codeFamily<MeshErrorCode>() {}

/** An agent's API socket answered something else than asked for; `policy trace` could not be answered. */
export class AgentError extends codeFamily<AgentErrorCode>() {}

/** The host lacks or refuses something wiremesh needs. */
export class HostError extends codeFamily<HostErrorCode>() {}

/** The testbed, its demo tour or the chaos runner failed. */
export class TestbedError extends codeFamily<TestbedErrorCode>() {}
