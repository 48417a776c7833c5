/**
 * `@corral/sdk`: a typed TypeScript client for Corral and the Prime Sandbox API.
 *
 * @example
 * ```ts
 * import { CorralClient, Sandbox } from '@corral/sdk';
 * const client = new CorralClient(); // CORRAL_API_URL / CORRAL_API_KEY
 * const sandbox = await Sandbox.create(client, { image: 'python:3.11-slim' });
 * await sandbox.waitUntilRunning();
 * console.log((await sandbox.exec('python3 --version')).stdout);
 * await sandbox.delete();
 * ```
 */
export { CorralClient } from './client.js';
export { Sandbox, createRequest, type CreateSandboxOptions, type ForkOptions, type ExposeOptions, type ExposedPort, type SandboxInfo, type SshSession, type WaitOptions } from './sandbox.js';
export { waitForCheckpoint, type CheckpointInfo, type WaitForCheckpointOptions } from './checkpoints.js';
export type { EventsOptions, FollowEventsOptions, SandboxEvent, SandboxStats } from './events.js';
export { egressPolicyBody, type EgressLogEntry, type EgressLogOptions, type EgressPolicyChange, type EgressPolicyStatus } from './egress.js';
export { ExecSession, type ExecSignal, type ExecStreamOptions, type ExecStreamResult } from './exec-stream.js';
export { GatewayClient, shellQuote, type CommandResult, type ExecOptions, type ProgressCallback, type ReadFileResult, type UploadSource } from './gateway-client.js';
export { GatewayTokenCache, type GatewayAuth } from './gateway-tokens.js';
export { StatusCoalescer, MAX_BATCH_IDS, type SandboxStatusEntry } from './status-coalescer.js';
export { type BackgroundJob, type BackgroundJobStatus } from './background-jobs.js';
export { SandboxesApi } from './resources/sandboxes-api.js';
export { KeysApi, QUOTA_UNLIMITED, TeamsApi, UsersApi, type Quota, type QuotaOverrides } from './resources/admin-api.js';
export { TunnelsApi } from './resources/tunnels-api.js';
export { ImagesApi, type ImageBuildOptions } from './resources/images-api.js';
export { WebhooksApi } from './resources/webhooks-api.js';
export { WEBHOOK_TOLERANCE_SECONDS, WebhookVerificationError, verifyWebhook, type WebhookHeaders } from './webhook-verify.js';
export { PACKED_DOCKERFILE_PATH, packBuildContext, type PackedContext } from './build-context.js';
export { HttpTransport, type CallOptions, type QueryValue } from './http.js';
export { SDK_VERSION, normaliseApiUrl, resolveOptions, type ClientOptions, type ResolvedOptions } from './options.js';
export type { RetryPolicy } from './retry.js';
export {
  APIError,
  BuildContextError,
  CheckpointFailedError,
  CommandTimeoutError,
  ConflictError,
  ConnectionError,
  CorralError,
  FileTooLargeError,
  ImageBuildFailedError,
  ForbiddenError,
  NotFoundError,
  NotImplementedError,
  QuotaExceededError,
  RateLimitError,
  ResponseValidationError,
  SandboxNotRunningError,
  TimeoutError,
  UnauthorizedError,
  ValidationError,
  type FieldProblem,
  type SandboxNotRunningKind,
} from './errors.js';
export type * from './generated/api.js';
