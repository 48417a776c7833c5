import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { ApiError, type FieldError } from '../errors/api-error.js';
import type { ErrorCode } from '../errors/error-codes.js';
import { toFieldErrors } from './validation.js';
import type { ErrorObject } from 'ajv';

/**
 * The code of a 4xx the HTTP framework raises, by its status; the status itself is the
 * framework's (a 4xx not listed here goes out as `MALFORMED_REQUEST` with that status).
 */
const STATUS_CODES: Partial<Record<number, ErrorCode>> = {
  400: 'MALFORMED_REQUEST',
  404: 'ROUTE_NOT_FOUND',
  405: 'METHOD_NOT_ALLOWED',
  413: 'PAYLOAD_TOO_LARGE',
  414: 'URI_TOO_LONG',
  415: 'UNSUPPORTED_MEDIA_TYPE',
};

/** Sends an API error as `{detail, code[, errors]}` with its status (and `Retry-After`). */
export function sendApiError(reply: FastifyReply, error: ApiError): FastifyReply {
  if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
  const body: { detail: string; code: string; errors?: FieldError[] } = { detail: error.message, code: error.code };
  if (error.fieldErrors) body.errors = error.fieldErrors;
  return reply.code(error.status).send(body);
}

/**
 * Errors Fastify raises before routing (a malformed URL, an overlong path parameter), in the API's
 * error shape.
 */
export function frameworkErrorHandler(error: FastifyError, _request: FastifyRequest, reply: FastifyReply): void {
  const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400;
  const detail = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path segment is too long' : `Malformed URL: ${error.message}`;
  void reply.code(status).send({ detail, code: STATUS_CODES[status] ?? 'MALFORMED_REQUEST' });
}

/**
 * Maps every error to a JSON body. Validation failures become 422 with one entry per field;
 * framework errors keep their 4xx status; anything else is a 500 that is logged with the request id.
 */
export function errorHandler(error: FastifyError | ApiError | Error, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error instanceof ApiError) return sendApiError(reply, error);
  const fastifyError = error as FastifyError & { validation?: ErrorObject[]; validationContext?: string };
  if (fastifyError.validation) {
    const fieldErrors = toFieldErrors(fastifyError.validation, fastifyError.validationContext);
    const summary = fieldErrors.map((e) => `${e.param}: ${e.details}`).join('; ');
    return sendApiError(reply, new ApiError('VALIDATION_FAILED', `Invalid request: ${summary}`, { fieldErrors }));
  }
  const status = fastifyError.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    const code = STATUS_CODES[status] ?? 'MALFORMED_REQUEST';
    return reply.code(status).send({ detail: fastifyError.message, code });
  }
  request.log.error({ err: error }, 'unhandled error');
  return sendApiError(reply, new ApiError('INTERNAL', `Internal error (request ${request.id}); the server log has the details`));
}
