/**
 * What a sandbox event says happened (`GET /api/v1/sandbox/{id}/events`, docs/events.md):
 * - `sandbox.created`: the create was stored (image, size, labels; never env values or secrets);
 * - `sandbox.status`: a status change with its reason (`from`, `to`, `reason`, `errorType`, `exitCode`);
 * - `exec`: a gateway exec (`command` truncated to 1 KiB, `exitCode`, `durationMs`, `timedOut`);
 * - `file.upload`, `file.download`, `file.read`: a transfer (`path`, `bytes`; never contents);
 * - `exposure.created`, `exposure.deleted`: a port exposure;
 * - `ssh.session_created`, `ssh.session_deleted`: an SSH session;
 * - `egress.policy_changed`: a new egress policy (`generation` and the lists, which hold domains and addresses);
 * - `stream.opened`: a streaming exec (WebSocket) or Connect-RPC `Start` session started its process (`command` truncated, `tty`);
 * - `checkpoint.created`, `checkpoint.durable`, `checkpoint.failed`, `checkpoint.deleted`: a checkpoint of the sandbox
 *   was asked for, stored, failed (`error`), or deleted (`checkpointId`, `memory`, `sizeBytes`, `durationMs`).
 */
export const SANDBOX_EVENT_TYPES = [
  'sandbox.created',
  'sandbox.status',
  'exec',
  'file.upload',
  'file.download',
  'file.read',
  'exposure.created',
  'exposure.deleted',
  'ssh.session_created',
  'ssh.session_deleted',
  'egress.policy_changed',
  'stream.opened',
  'checkpoint.created',
  'checkpoint.durable',
  'checkpoint.failed',
  'checkpoint.deleted',
] as const;

export type SandboxEventType = (typeof SANDBOX_EVENT_TYPES)[number];

/** Who caused an event: the user and the API key they acted through (null when the key is not known). */
export interface SandboxEventActor {
  userId: string;
  keyId: string | null;
}

/** One stored event of a sandbox. Ids sort in the order this process recorded them (time first). */
export interface SandboxEventRecord {
  id: string;
  sandboxId: string;
  /** ISO-8601 time the event happened. */
  at: string;
  type: SandboxEventType;
  /** Null for what the server did on its own (a timeout, an exit, the reconciler). */
  actor: SandboxEventActor | null;
  /** Type-specific fields, JSON. */
  data: Record<string, unknown>;
}
