import { type ConnectCode, GATEWAY_ERRORS, type GatewayErrorCode } from './error-codes.js';

/** The JSON body of every gateway error: `{error, message, code}`, plus fields some errors add. */
export interface GatewayErrorBody {
  error: string;
  message: string;
  code: number;
  [extra: string]: unknown;
}

/**
 * An error the gateway answers with a JSON body. `error` is a short machine name
 * (`sandbox_not_found`, `unauthorized`, …) as Prime's gateway uses it; its HTTP status and the
 * Connect code a Connect-RPC call gets for it come from the registry (`GATEWAY_ERRORS`).
 */
export class GatewayError extends Error {
  /** The HTTP status, from the registry. */
  readonly status: number;

  constructor(
    readonly error: GatewayErrorCode,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'GatewayError';
    this.status = GATEWAY_ERRORS[error].status;
  }

  /** The Connect code a Connect-RPC call answers with for this failure. */
  get connectCode(): ConnectCode {
    return GATEWAY_ERRORS[this.error].connect;
  }

  /** The response body. */
  body(): GatewayErrorBody {
    return { error: this.error, message: this.message, code: this.status, ...this.extra };
  }
}

/** 401: the token is missing, invalid, expired or for another sandbox. */
export function unauthorized(message: string): GatewayError {
  return new GatewayError('unauthorized', message);
}

/** 422: the request is malformed. */
export function invalid(message: string): GatewayError {
  return new GatewayError('validation_error', message);
}

/** 502 in the shape the Prime SDK maps to `SandboxNotRunningError` (`SANDBOX_NOT_FOUND`). */
export function sandboxNotFound(sandboxId: string, message: string): GatewayError {
  return new GatewayError('sandbox_not_found', message, { sandboxId });
}

/**
 * 429 `rate_limited`: the user sent more gateway requests than its rate allows, or has too many
 * operations waiting. The answer carries `Retry-After: <seconds>` and `retry_after` in the body;
 * the message starts with "Too Many Requests", which the Prime SDK matches on.
 */
export function tooManyRequests(message: string, retryAfterSeconds: number): GatewayError {
  return new GatewayError('rate_limited', message, { retry_after: retryAfterSeconds });
}

/** The `Retry-After` seconds of an error, when it has one. */
export function retryAfterOf(error: GatewayError): number | undefined {
  const value = error.extra.retry_after;
  return typeof value === 'number' ? value : undefined;
}
