/**
 * Error classes with stable codes (as undici does): callers and tests match on
 * `code`, never on message text, so messages can improve without breaking them.
 */
export class WiremeshError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A configuration value (UAPI key, config file field, CLI flag) is invalid. */
export class ConfigError extends WiremeshError {
  readonly field: string;
  constructor(field: string, reason: string) {
    super('WM_CONFIG_INVALID', `${field}: ${reason}`);
    this.field = field;
  }
}

/** A handshake message failed validation; the message is dropped. */
export class HandshakeError extends WiremeshError {
  constructor(reason: string) {
    super('WM_HANDSHAKE_REJECTED', reason);
  }
}

/** An endpoint claims addresses another endpoint holds (agent API: 409; `replace: true` takes them over). */
export class EndpointConflictError extends WiremeshError {
  constructor(readonly holders: Array<{ ip: string; cluster: string; node: string; endpoint: string }>) {
    super('WM_ENDPOINT_CONFLICT', `address ${holders.map((h) => `${h.ip} is held by ${h.cluster}/${h.node}/${h.endpoint}`).join('; ')} (replace: true takes it over)`);
  }
}

/** The object a command names does not exist (CLI exit status 3, agent API 404). */
export class NotFoundError extends WiremeshError {
  constructor(message: string) {
    super('WM_NOT_FOUND', message);
  }
}

/** A label key already has a value and the request did not say to overwrite it (CLI exit status 4, agent API 409). */
export class LabelExistsError extends WiremeshError {
  constructor(readonly key: string, value: string) {
    super('WM_LABEL_EXISTS', `'${key}' already has a value (${value}), and --overwrite is false`);
  }
}
