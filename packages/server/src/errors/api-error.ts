import { type ErrorCode, statusOf } from './error-codes.js';

/** One invalid field in a 422 response, in the Prime API's `ErrorDetail` shape. */
export interface FieldError {
  /** The field, as a dotted path (`cpu_cores`, `labels.0`, `query.per_page`). */
  param: string;
  /** Why it is invalid. */
  details: string;
}

/**
 * An error that maps to a JSON API response.
 *
 * Services throw it; the HTTP layer turns it into `{detail, code}` (plus `errors[]`
 * for validation failures) with the status from the error-code registry.
 */
export class ApiError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly fieldErrors: FieldError[] | undefined;
  /** Seconds a client should wait, sent as `Retry-After`. */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { fieldErrors?: FieldError[]; retryAfterSeconds?: number } = {},
  ) {
    super(message);
    this.name = 'ApiError';
    this.code = code;
    this.status = statusOf(code);
    this.fieldErrors = options.fieldErrors;
    this.retryAfterSeconds = options.retryAfterSeconds;
  }

  /** A 422 for one field. */
  static invalid(param: string, details: string): ApiError {
    return new ApiError('VALIDATION_FAILED', `${param}: ${details}`, { fieldErrors: [{ param, details }] });
  }

  /** A 404 that never reveals whether the sandbox exists for someone else. */
  static sandboxNotFound(id: string): ApiError {
    return new ApiError('SANDBOX_NOT_FOUND', `Sandbox ${id} not found`);
  }
}
