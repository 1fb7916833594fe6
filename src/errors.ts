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
