/**
 * Every error the Corral API can return, with the HTTP status it maps to.
 *
 * The `satisfies` clause makes the compiler reject a code without a status, so the
 * registry, the error handler and `docs/errors.md` cannot drift apart.
 */
export const ERROR_STATUS = {
  /** The request body or query failed validation; `errors[]` names each field. */
  VALIDATION_FAILED: 422,
  /** The body is not parseable JSON or has the wrong content type. */
  MALFORMED_REQUEST: 400,
  /** The body's content type is not one this route reads (send `application/json`). */
  UNSUPPORTED_MEDIA_TYPE: 415,
  /** The URL (or one of its path segments) is longer than the server accepts. */
  URI_TOO_LONG: 414,
  /** The body is larger than the server accepts. */
  PAYLOAD_TOO_LARGE: 413,
  /** No API key, an unknown key or a revoked key. */
  UNAUTHORIZED: 401,
  /** The key is valid but may not do this (for example: admin-only routes). */
  FORBIDDEN: 403,
  /** The route does not exist. */
  ROUTE_NOT_FOUND: 404,
  /** The HTTP method is not served on this path. */
  METHOD_NOT_ALLOWED: 405,
  /** The sandbox does not exist or belongs to someone else. */
  SANDBOX_NOT_FOUND: 404,
  /** The port exposure does not exist on this sandbox. */
  EXPOSURE_NOT_FOUND: 404,
  /** The SSH session does not exist on this sandbox. */
  SSH_SESSION_NOT_FOUND: 404,
  /** The tunnel does not exist or belongs to someone else. */
  TUNNEL_NOT_FOUND: 404,
  /** The user, team or API key named does not exist. */
  RESOURCE_NOT_FOUND: 404,
  /** The request conflicts with the current state (for example: a duplicate name). */
  CONFLICT: 409,
  /** The sandbox is not in a state that allows this operation. */
  SANDBOX_NOT_RUNNING: 409,
  /** The user holds as many unexpired tunnels as allowed (Prime's 400 "maximum number of"). */
  TUNNEL_LIMIT_REACHED: 400,
  /** The create would take the user's or team's active sandboxes past a quota (count, CPU, memory or disk). */
  QUOTA_EXCEEDED: 403,
  /** Too many requests from this user (any of their keys; per sandbox where Prime counts so) in the current window; see `Retry-After`. */
  RATE_LIMITED: 429,
  /** The feature exists in the API but this server has no backend for it yet. */
  NOT_IMPLEMENTED: 501,
  /** The host cannot provide what was asked for (for example: GPUs on a host without any). */
  UNSUPPORTED_RESOURCE: 422,
  /** The runtime driver does not enforce egress policies: only open egress and no network can be asked for. */
  EGRESS_UNSUPPORTED: 422,
  /** The sandbox was created without network: its egress can only stay closed (an empty allow list). */
  EGRESS_NO_NETWORK: 409,
  /** The server is shutting down or a dependency is unavailable; retry later. */
  SERVICE_UNAVAILABLE: 503,
  /** A bug: the server failed in a way it did not expect. Reported with a request id. */
  INTERNAL: 500,
} as const satisfies Record<string, number>;

/** A stable, documented error code. */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** The HTTP status for an error code. */
export function statusOf(code: ErrorCode): number {
  return ERROR_STATUS[code];
}
