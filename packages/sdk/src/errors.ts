/**
 * Typed errors. Every message says what went wrong and what to do next; `status` and `code` carry
 * the HTTP status and the server's stable error code (docs/errors.md) for programs.
 */

/** A field the server rejected, as in a 422's `errors` list. */
export interface FieldProblem {
  param: string;
  details: string;
}

/** Base class of every error the SDK throws for an answer from the server (or its absence). */
export class CorralError extends Error {
  /** HTTP status, or 0 when no answer came. */
  readonly status: number;
  /** The server's stable error code (`SANDBOX_NOT_FOUND`, `sandbox_not_found`, …) when it sent one. */
  readonly code: string | undefined;
  constructor(message: string, options: { status?: number; code?: string | undefined; cause?: unknown } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.name = new.target.name;
    this.status = options.status ?? 0;
    this.code = options.code;
  }
}

/** Alias for compatibility with the Prime SDK's naming. */
export { CorralError as APIError };

/** No answer: the server is down, the URL is wrong, or the network failed. */
export class ConnectionError extends CorralError {}

/** 401: missing, unknown or revoked API key. */
export class UnauthorizedError extends CorralError {}

/** 403: the key is valid but may not do this. */
export class ForbiddenError extends CorralError {}

/**
 * 403 `QUOTA_EXCEEDED`: creating the sandbox would take your (or the team's) active sandboxes past
 * a quota: their number, total CPU cores, memory or disk. The message names the limit and the usage.
 */
export class QuotaExceededError extends ForbiddenError {}

/** 404: the sandbox (or user, key, team, file…) does not exist or is not yours. */
export class NotFoundError extends CorralError {}

/** 409: the request conflicts with the current state. */
export class ConflictError extends CorralError {}

/** 422: the request was invalid; `fields` names each problem. */
export class ValidationError extends CorralError {
  readonly fields: FieldProblem[];
  constructor(message: string, fields: FieldProblem[], options: { status?: number; code?: string | undefined } = {}) {
    super(message, options);
    this.fields = fields;
  }
}

/** 429 after the configured retries ran out. */
export class RateLimitError extends CorralError {
  /** Seconds the server asked to wait (`Retry-After`), when it said. */
  readonly retryAfterSeconds: number | undefined;
  constructor(message: string, retryAfterSeconds: number | undefined, options: { code?: string | undefined } = {}) {
    super(message, { status: 429, code: options.code });
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** 501: the route exists in the API but this server does not serve it. */
export class NotImplementedError extends CorralError {}

/** The request took longer than the client's timeout. */
export class TimeoutError extends CorralError {}

/** An exec ran past its `timeout` (gateway 408); the command was killed. */
export class CommandTimeoutError extends TimeoutError {
  readonly sandboxId: string;
  readonly command: string;
  readonly timeoutSeconds: number;
  /** Output the command wrote before it was killed, when the server returned it. */
  readonly stdout: string;
  readonly stderr: string;
  constructor(sandboxId: string, command: string, timeoutSeconds: number, output: { stdout?: string; stderr?: string } = {}) {
    super(
      `Command '${command.slice(0, 50)}' timed out after ${timeoutSeconds}s in sandbox ${sandboxId} and was killed. ` +
        'Pass a larger `timeout`, or run it as a background job (startBackgroundJob) if it takes long.',
      { status: 408, code: 'command_timeout' },
    );
    this.sandboxId = sandboxId;
    this.command = command;
    this.timeoutSeconds = timeoutSeconds;
    this.stdout = output.stdout ?? '';
    this.stderr = output.stderr ?? '';
  }
}

/** Why a sandbox is not running, from its `errorType` (and status). */
export type SandboxNotRunningKind =
  | 'OOM_KILLED'
  | 'TIMEOUT'
  | 'IMAGE_PULL_FAILED'
  | 'SANDBOX_NOT_FOUND'
  | 'GATEWAY_REACHABILITY_TIMEOUT'
  | 'TERMINATED'
  | 'ERROR';

const KIND_HINTS: Record<SandboxNotRunningKind, string> = {
  OOM_KILLED: 'It ran out of memory: create a new sandbox with a larger memoryGb.',
  TIMEOUT: 'It reached its timeout: create a new sandbox with a larger timeoutMinutes (or idleTimeoutMinutes).',
  IMAGE_PULL_FAILED: 'Its image could not be pulled: check the image name and that the server can reach the registry.',
  SANDBOX_NOT_FOUND: 'It is gone (deleted, or its container vanished): create a new sandbox.',
  GATEWAY_REACHABILITY_TIMEOUT: 'It is RUNNING but did not answer commands in time: check the server logs, or delete it and create a new one.',
  TERMINATED: 'It has ended (deleted, or its start command exited): create a new sandbox, with a start command that keeps running.',
  ERROR: 'It failed: read sandbox.logs() and the error message, then create a new sandbox.',
};

/** Maps a server `errorType`/status to the SDK's kind. */
export function notRunningKind(status: string | null | undefined, errorType: string | null | undefined): SandboxNotRunningKind {
  switch (errorType) {
    case 'OOM_KILLED':
    case 'IMAGE_PULL_FAILED':
    case 'SANDBOX_NOT_FOUND':
    case 'GATEWAY_REACHABILITY_TIMEOUT':
      return errorType;
    case 'TIMEOUT':
    case 'IDLE_TIMEOUT':
      return 'TIMEOUT';
  }
  if (status === 'TIMEOUT') return 'TIMEOUT';
  if (status === 'TERMINATED') return 'TERMINATED';
  if (status === 'ERROR') return 'ERROR';
  return 'SANDBOX_NOT_FOUND';
}

/** The sandbox has ended (or never started): commands and file operations cannot reach it. */
export class SandboxNotRunningError extends CorralError {
  readonly sandboxId: string;
  readonly kind: SandboxNotRunningKind;
  /** The sandbox's status when known (`ERROR`, `TERMINATED`, `TIMEOUT`). */
  readonly sandboxStatus: string | null;
  /** The server's raw `errorType` (`OOM_KILLED`, `START_FAILED`, …). */
  readonly errorType: string | null;
  readonly errorMessage: string | null;
  constructor(
    sandboxId: string,
    info: { kind: SandboxNotRunningKind; status?: string | null; errorType?: string | null; errorMessage?: string | null; command?: string },
  ) {
    const what = info.command !== undefined ? `Command '${info.command.slice(0, 50)}' failed: sandbox ${sandboxId} is no longer running` : `Sandbox ${sandboxId} is not running`;
    const status = info.status ? ` (status ${info.status}${info.errorType ? `, ${info.errorType}` : ''})` : '';
    const details = info.errorMessage ? ` Details: ${info.errorMessage}` : '';
    super(`${what}${status}. ${KIND_HINTS[info.kind]}${details}`, { status: 0, code: info.kind });
    this.sandboxId = sandboxId;
    this.kind = info.kind;
    this.sandboxStatus = info.status ?? null;
    this.errorType = info.errorType ?? null;
    this.errorMessage = info.errorMessage ?? null;
  }
}

/**
 * A checkpoint ended without becoming DURABLE (`FAILED`, or `DELETING`): it cannot be restored or
 * forked. `error` is the server's reason (for example what a memory checkpoint could not capture).
 */
export class CheckpointFailedError extends CorralError {
  readonly checkpointId: string;
  readonly state: string;
  readonly error: string | null;
  constructor(checkpointId: string, state: string, error: string | null) {
    super(`Checkpoint ${checkpointId} is ${state}${error ? `: ${error}` : ''}. It cannot be restored; take a new checkpoint.`, { code: 'CHECKPOINT_FAILED' });
    this.checkpointId = checkpointId;
    this.state = state;
    this.error = error;
  }
}

/** The server's answer did not have the shape the SDK expects (an incompatible server version?). */
export class ResponseValidationError extends CorralError {}

/** read-file on a file (or window) over the server's 10 MiB read limit (413). */
export class FileTooLargeError extends CorralError {}

/** The build context could not be packed: a missing directory or Dockerfile, an unreadable file. Nothing was sent. */
export class BuildContextError extends CorralError {}

/**
 * An image build ended `FAILED` (or `CANCELLED`): `failedStep` is the Dockerfile step that failed
 * (`[1/2] STEP 5/6: RUN make`) when the builder got that far, `errorMessage` the server's error text
 * (what failed, then the tail of the builder's output).
 */
export class ImageBuildFailedError extends CorralError {
  readonly buildId: string;
  /** The build's final status (`FAILED` or `CANCELLED`). */
  readonly buildStatus: string;
  readonly failedStep: string | null;
  readonly errorMessage: string | null;
  constructor(buildId: string, image: string, info: { status: string; failedStep: string | null; errorMessage: string | null }) {
    const where = info.failedStep ? ` at ${info.failedStep}` : '';
    const what = info.errorMessage ? `\n${info.errorMessage}` : '';
    super(
      `Image build ${buildId} of ${image} ended ${info.status}${where}. ` +
        `Fix that step of the Dockerfile (or the context it reads) and build again; the whole log: \`client.images.logs('${buildId}')\`.${what}`,
      { status: 0, code: info.status === 'CANCELLED' ? 'IMAGE_BUILD_CANCELLED' : 'IMAGE_BUILD_FAILED' },
    );
    this.buildId = buildId;
    this.buildStatus = info.status;
    this.failedStep = info.failedStep;
    this.errorMessage = info.errorMessage;
  }
}
