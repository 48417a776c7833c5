import type { FastifyReply } from 'fastify';
import { GATEWAY_ERRORS, isGatewayErrorCode } from '../errors/error-codes.js';
import { GatewayError, type GatewayErrorBody, retryAfterOf } from '../errors/gateway-error.js';

/** Sends a gateway error (with `Retry-After` when it has one). */
export function sendGatewayError(reply: FastifyReply, error: GatewayError): FastifyReply {
  const retryAfter = retryAfterOf(error);
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter));
  return reply.code(error.status).type('application/json').send(error.body());
}

/**
 * Sends a 4xx the HTTP framework raised on a gateway route, in the gateway's shape: a registered
 * code (`fst_err_ctp_body_too_large`, …) as a `GatewayError`; any other keeps the framework's
 * status and its code lower-cased (`bad_request` without one), as docs/errors.md describes.
 */
export function sendFrameworkRejection(reply: FastifyReply, status: number, frameworkCode: string | undefined, message: string): FastifyReply {
  const code = (frameworkCode ?? 'bad_request').toLowerCase();
  if (isGatewayErrorCode(code) && GATEWAY_ERRORS[code].status === status) return sendGatewayError(reply, new GatewayError(code, message));
  const body: GatewayErrorBody = { error: code, message, code: status };
  return reply.code(status).type('application/json').send(body);
}
