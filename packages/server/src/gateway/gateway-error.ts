import type { FastifyReply } from 'fastify';

/** The JSON body of every gateway error: `{error, message, code}`, plus fields some errors add. */
export interface GatewayErrorBody {
  error: string;
  message: string;
  code: number;
  [extra: string]: unknown;
}

/**
 * An error the gateway answers with its own status and a JSON body. `error` is a short machine
 * name (`sandbox_not_found`, `unauthorized`, …) as Prime's gateway uses it.
 */
export class GatewayError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = 'GatewayError';
  }

  /** The response body. */
  body(): GatewayErrorBody {
    return { error: this.error, message: this.message, code: this.status, ...this.extra };
  }
}

/** 401: the token is missing, invalid, expired or for another sandbox. */
export function unauthorized(message: string): GatewayError {
  return new GatewayError(401, 'unauthorized', message);
}

/** 422: the request is malformed. */
export function invalid(message: string): GatewayError {
  return new GatewayError(422, 'validation_error', message);
}

/** 502 in the shape the Prime SDK maps to `SandboxNotRunningError` (`SANDBOX_NOT_FOUND`). */
export function sandboxNotFound(sandboxId: string, message: string): GatewayError {
  return new GatewayError(502, 'sandbox_not_found', message, { sandboxId });
}

/** Sends a gateway error. */
export function sendGatewayError(reply: FastifyReply, error: GatewayError): FastifyReply {
  return reply.code(error.status).type('application/json').send(error.body());
}
