/**
 * The registry of every error code the server sends, with its HTTP status and, where a
 * Connect-RPC call can get it, its Connect code. Three wire shapes use it:
 *
 * - the control plane (`/api/v1/…`): `{detail, code}` with a code of `API_ERRORS`;
 * - the data-plane gateway (`/gateway/…`): `{error, message, code: <status>}` with an `error` of
 *   `GATEWAY_ERRORS`;
 * - Connect-RPC (`command_session.CommandSession`): `{code, message}` with a code of
 *   `CONNECT_STATUS`; a gateway failure on a Connect call is answered with its entry's `connect`.
 *
 * Driver failures (`RuntimeError.kind`, `RUNTIME_FAILURES`) are mapped to these codes here and
 * nowhere else. The `satisfies` clauses make the compiler reject an entry without a status (or a
 * gateway entry without its Connect code); `errors/error-docs.test.ts` checks that
 * `docs/errors.md` lists every code with its status.
 */

/** Connect error codes (connectrpc.com/docs/protocol) and the HTTP status of a unary error response with each. */
export const CONNECT_STATUS = {
  canceled: 499,
  unknown: 500,
  invalid_argument: 400,
  deadline_exceeded: 504,
  not_found: 404,
  already_exists: 409,
  permission_denied: 403,
  resource_exhausted: 429,
  failed_precondition: 400,
  aborted: 409,
  out_of_range: 400,
  unimplemented: 501,
  internal: 500,
  unavailable: 503,
  data_loss: 500,
  unauthenticated: 401,
} as const satisfies Record<string, number>;

/** A Connect error code. */
export type ConnectCode = keyof typeof CONNECT_STATUS;

/** What the registry holds for one code. */
export interface ErrorSpec {
  /** The HTTP status the code is sent with. */
  readonly status: number;
  /** The Connect code a Connect-RPC call answers with instead, where the failure can happen there. */
  readonly connect?: ConnectCode;
}

/** Every code of the control plane's `{detail, code}` bodies. */
export const API_ERRORS = {
  /** The request body or query failed validation; `errors[]` names each field. */
  VALIDATION_FAILED: { status: 422 },
  /** The body is not parseable JSON or has the wrong content type. */
  MALFORMED_REQUEST: { status: 400 },
  /** The body's content type is not one this route reads (send `application/json`). */
  UNSUPPORTED_MEDIA_TYPE: { status: 415 },
  /** The URL (or one of its path segments) is longer than the server accepts. */
  URI_TOO_LONG: { status: 414 },
  /** The body is larger than the server accepts. */
  PAYLOAD_TOO_LARGE: { status: 413 },
  /** No API key, an unknown key or a revoked key. */
  UNAUTHORIZED: { status: 401 },
  /** The key is valid but may not do this (for example: admin-only routes). */
  FORBIDDEN: { status: 403 },
  /** The route does not exist. */
  ROUTE_NOT_FOUND: { status: 404 },
  /** The HTTP method is not served on this path. */
  METHOD_NOT_ALLOWED: { status: 405 },
  /** The sandbox does not exist or belongs to someone else. */
  SANDBOX_NOT_FOUND: { status: 404 },
  /** The port exposure does not exist on this sandbox. */
  EXPOSURE_NOT_FOUND: { status: 404 },
  /** The SSH session does not exist on this sandbox. */
  SSH_SESSION_NOT_FOUND: { status: 404 },
  /** The tunnel does not exist or belongs to someone else. */
  TUNNEL_NOT_FOUND: { status: 404 },
  /** The user, team or API key named does not exist. */
  RESOURCE_NOT_FOUND: { status: 404 },
  /** The webhook endpoint does not exist, or is not the caller's (nor a team's they administer). */
  WEBHOOK_NOT_FOUND: { status: 404 },
  /** The image does not exist, or belongs to someone else (Corral never says which). */
  IMAGE_NOT_FOUND: { status: 404 },
  /** The image build does not exist, or belongs to someone else. */
  IMAGE_BUILD_NOT_FOUND: { status: 404 },
  /** A build's upload URL whose signature does not match, or that has expired. */
  UPLOAD_URL_INVALID: { status: 403 },
  /** The request conflicts with the current state (for example: a duplicate name). */
  CONFLICT: { status: 409 },
  /** The sandbox is not in a state that allows this operation (ended, or not RUNNING/PAUSED for pause and resume). */
  SANDBOX_NOT_RUNNING: { status: 409 },
  /** The runtime driver cannot pause sandboxes (`kubernetes`, or a driver without the capability). */
  PAUSE_UNSUPPORTED: { status: 409 },
  /** The checkpoint does not exist, or is neither the caller's nor a team's they administer. */
  CHECKPOINT_NOT_FOUND: { status: 404 },
  /** The runtime driver cannot take or restore checkpoints (`kubernetes`, or a driver without the capability). */
  CHECKPOINT_UNSUPPORTED: { status: 409 },
  /** A memory checkpoint (`memory: true`) on a runtime driver that captures filesystems only. */
  MEMORY_CHECKPOINT_UNSUPPORTED: { status: 409 },
  /** A restore or fork of a checkpoint that is not DURABLE (still being captured, failed, or being deleted). */
  CHECKPOINT_NOT_DURABLE: { status: 409 },
  /** A delete of a checkpoint whose capture is still running (PENDING or FROZEN). */
  CHECKPOINT_BUSY: { status: 409 },
  /** `POST /sandbox/{id}/fork`: the checkpoint it took first failed; nothing was forked. */
  CHECKPOINT_CAPTURE_FAILED: { status: 409 },
  /** The user holds as many unexpired tunnels as allowed (Prime's 400 "maximum number of"). */
  TUNNEL_LIMIT_REACHED: { status: 400 },
  /** The create would take the user's or team's active sandboxes past a quota (count, CPU, memory or disk). */
  QUOTA_EXCEEDED: { status: 403 },
  /** The admission queue (creates waiting for capacity) is full, server-wide or for this user; nothing was stored; see `Retry-After`. */
  ADMISSION_QUEUE_FULL: { status: 429 },
  /** Too many requests from this user (any of their keys; per sandbox where Prime counts so) in the current window; see `Retry-After`. */
  RATE_LIMITED: { status: 429 },
  /** The feature exists in the API but this server has no backend for it yet. */
  NOT_IMPLEMENTED: { status: 501 },
  /** The host cannot provide what was asked for (for example: GPUs on a host without any). */
  UNSUPPORTED_RESOURCE: { status: 422 },
  /** The runtime driver does not enforce egress policies: only open egress and no network can be asked for. */
  EGRESS_UNSUPPORTED: { status: 422 },
  /** The sandbox was created without network: its egress can only stay closed (an empty allow list). */
  EGRESS_NO_NETWORK: { status: 409 },
  /** The server is shutting down or a dependency is unavailable; retry later. */
  SERVICE_UNAVAILABLE: { status: 503 },
  /** A bug: the server failed in a way it did not expect. Reported with a request id. */
  INTERNAL: { status: 500 },
} as const satisfies Record<string, ErrorSpec>;

/** A stable, documented control-plane error code. */
export type ErrorCode = keyof typeof API_ERRORS;

/** The HTTP status of each control-plane code (part of the package's public API). */
export const ERROR_STATUS = Object.fromEntries(Object.entries(API_ERRORS).map(([code, spec]) => [code, spec.status])) as {
  readonly [C in ErrorCode]: (typeof API_ERRORS)[C]['status'];
};

/** The HTTP status for a control-plane error code. */
export function statusOf(code: ErrorCode): number {
  return API_ERRORS[code].status;
}

/** A gateway entry: every gateway failure can happen on a Connect call, so each has its Connect code. */
interface GatewayErrorSpec extends ErrorSpec {
  readonly connect: ConnectCode;
}

/**
 * Every `error` of the gateway's `{error, message, code}` bodies (lower-case, as Prime's gateway
 * names them), with the status it is sent with and the Connect code a Connect-RPC call gets for it.
 */
export const GATEWAY_ERRORS = {
  /** The gateway token is missing, invalid, expired, for another sandbox or namespace, or its access was revoked. */
  unauthorized: { status: 401, connect: 'unauthenticated' },
  /** The request is malformed (a REST body field, a path, a multipart body). */
  validation_error: { status: 422, connect: 'unknown' },
  /** The request body is not valid JSON. */
  invalid_json: { status: 400, connect: 'invalid_argument' },
  /** A malformed request the gateway refuses before reading it (a bad path, an SSH `authorize` body). */
  bad_request: { status: 400, connect: 'invalid_argument' },
  /** The body is larger than the route accepts (Fastify's `FST_ERR_CTP_BODY_TOO_LARGE`). */
  fst_err_ctp_body_too_large: { status: 413, connect: 'resource_exhausted' },
  /** The `Content-Length` header does not match the body (Fastify's `FST_ERR_CTP_INVALID_CONTENT_LENGTH`). */
  fst_err_ctp_invalid_content_length: { status: 400, connect: 'invalid_argument' },
  /** The sandbox is PENDING, PROVISIONING or PAUSED: not RUNNING yet. */
  sandbox_not_ready: { status: 409, connect: 'unavailable' },
  /** The sandbox has ended, is missing or has no container (the Prime SDK's `SandboxNotRunningError`). */
  sandbox_not_found: { status: 502, connect: 'not_found' },
  /** The runtime could not be reached, or failed. */
  gateway_error: { status: 502, connect: 'unavailable' },
  /** An exec ran past its timeout; its process tree was killed. */
  command_timeout: { status: 408, connect: 'deadline_exceeded' },
  /** A transfer moved no byte for `CORRAL_TRANSFER_IDLE_TIMEOUT` seconds and was cut. */
  idle_timeout: { status: 408, connect: 'deadline_exceeded' },
  /** `download` / `read-file` of a path that does not exist. */
  file_not_found: { status: 404, connect: 'not_found' },
  /**
   * `read-file` of a file over 10 MiB. Sent in Prime's shape `{error: <message>, code: 413, total_size}`:
   * this name itself is not on the wire.
   */
  read_file_too_large: { status: 413, connect: 'resource_exhausted' },
  /** The SSH session named in `authorize` does not exist on this sandbox. */
  ssh_session_not_found: { status: 404, connect: 'not_found' },
  /** Over the user's gateway request rate, or too many operations queued; see `Retry-After`. */
  rate_limited: { status: 429, connect: 'resource_exhausted' },
  /** The client went away while its operation waited for a slot (never answered: nobody is left). */
  client_closed: { status: 499, connect: 'unknown' },
  /** The endpoint exists but this server does not serve it (SSH sessions without networking). */
  not_implemented: { status: 501, connect: 'unimplemented' },
  /** `GET …/stream` without a WebSocket upgrade. */
  upgrade_required: { status: 426, connect: 'unknown' },
  /** A WebSocket upgrade to a path with no WebSocket endpoint. */
  not_found: { status: 404, connect: 'not_found' },
  /** A WebSocket upgrade while the server shuts down. */
  shutting_down: { status: 503, connect: 'unavailable' },
  /** A bug; the body carries the request id and the server log has the stack. */
  internal_error: { status: 500, connect: 'internal' },
} as const satisfies Record<string, GatewayErrorSpec>;

/** A gateway error code. */
export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS;

/**
 * The streaming-exec WebSocket's own in-band errors (`{"type": "error", "error", "message"}`,
 * docs/streaming-exec.md), with the WebSocket close code that follows (null: the session stays
 * open). Gateway failures during a session are sent the same way with their gateway code.
 */
export const STREAM_ERRORS = {
  /** No `start` message within the start timeout. */
  start_timeout: { close: 1008 },
  /** The `start` message is not JSON or not a valid start. */
  invalid_start: { close: 1008 },
  /** A later message could not be used (not JSON, an unknown type, a bad signal or resize). */
  invalid_message: { close: null },
} as const satisfies Record<string, { close: number | null }>;

/** A streaming-exec error code. */
export type StreamErrorCode = keyof typeof STREAM_ERRORS;

/** Whether `code` is a registered gateway code. */
export function isGatewayErrorCode(code: string): code is GatewayErrorCode {
  return Object.hasOwn(GATEWAY_ERRORS, code);
}

/**
 * The Connect code for a failure known only by its HTTP status (a 4xx raised by the HTTP
 * framework on a Connect call: a body over the limit, a bad `Content-Length`).
 */
export function connectCodeOfStatus(status: number): ConnectCode {
  switch (status) {
    case 400:
    case 415:
      return 'invalid_argument';
    case 401:
      return 'unauthenticated';
    case 403:
      return 'permission_denied';
    case 404:
      return 'not_found';
    case 408:
      return 'deadline_exceeded';
    case 409:
      return 'unavailable';
    case 413:
    case 429:
      return 'resource_exhausted';
    case 501:
      return 'unimplemented';
    case 502:
    case 503:
    case 504:
      return 'unavailable';
    default:
      return status >= 500 ? 'internal' : 'unknown';
  }
}

/** The `errorType` a sandbox gets when its start fails. */
export type StartFailureType = 'IMAGE_PULL_FAILED' | 'START_FAILED';

/**
 * Driver failures (`RuntimeError.kind`) and the one place they become codes: `gateway` is what a
 * data-plane call that hit the failure answers, `startErrorType` the sandbox's `errorType` when
 * the failure ended its start.
 */
export const RUNTIME_FAILURES = {
  /** The image could not be pulled (no such image, refused credentials, a layer over the limits). */
  IMAGE_PULL_FAILED: { gateway: 'gateway_error', startErrorType: 'IMAGE_PULL_FAILED' },
  /** The sandbox could not be started (no disk space, the container never accepted a command). */
  START_FAILED: { gateway: 'gateway_error', startErrorType: 'START_FAILED' },
  /** The driver cannot do what was asked (GPUs it does not have, egress policies it does not enforce). */
  UNSUPPORTED: { gateway: 'gateway_error', startErrorType: 'START_FAILED' },
  /** The driver has no such sandbox (any more), or it is not running. */
  NOT_FOUND: { gateway: 'sandbox_not_found', startErrorType: 'START_FAILED' },
  /** The sandbox is paused: its processes are frozen until it is resumed. */
  PAUSED: { gateway: 'sandbox_not_ready', startErrorType: 'START_FAILED' },
  /** A checkpoint could not be taken or restored (the reason says what, e.g. what CRIU could not handle). */
  CHECKPOINT_FAILED: { gateway: 'gateway_error', startErrorType: 'START_FAILED' },
  /** Anything else the driver or its engine failed at. */
  RUNTIME_ERROR: { gateway: 'gateway_error', startErrorType: 'START_FAILED' },
} as const satisfies Record<string, { gateway: GatewayErrorCode; startErrorType: StartFailureType }>;

/** Why a driver failed; `RuntimeError.kind`. */
export type RuntimeErrorKind = keyof typeof RUNTIME_FAILURES;
