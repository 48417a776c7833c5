/**
 * Where a checkpoint is (Prime's states): `PENDING` (asked for, the capture has not frozen the
 * sandbox yet), `FROZEN` (the capture is taken and the sandbox runs again; it is being stored),
 * `DURABLE` (stored: it can be restored and forked), `FAILED` (with `error`), `DELETING` (its data
 * is being deleted; the row goes once it is).
 */
export const CHECKPOINT_STATES = ['PENDING', 'FROZEN', 'DURABLE', 'FAILED', 'DELETING'] as const;

export type CheckpointState = (typeof CHECKPOINT_STATES)[number];

/** States of a checkpoint whose capture is still running somewhere. */
export const CAPTURING_STATES: readonly CheckpointState[] = ['PENDING', 'FROZEN'];

/**
 * One checkpoint of a sandbox (`docs/checkpoints.md`): an immutable capture of its writable
 * filesystem (and, with `memory`, its processes), stored by the runtime driver under `runtimeRef`.
 * It outlives its sandbox; it is visible to its owner and to admins of its team, as sandboxes are.
 */
export interface CheckpointRecord {
  id: string;
  /** The sandbox it was taken of (which may have ended, or be gone, since). */
  sandboxId: string;
  /** The checkpoint it was stored on top of: the sandbox's previous durable one, or the one it was restored from. */
  parentId: string | null;
  /** 1 + the parent's depth (1 without a parent): how many layers a restore stacks. */
  depth: number;
  /** The sandbox's owner: whose quota its bytes count against. */
  userId: string;
  teamId: string | null;
  state: CheckpointState;
  /** The image the sandbox ran; a restore runs it again, under the checkpoint's layers. */
  dockerImage: string;
  /** The sandbox's disk size; a restore gets the same. */
  diskSizeGb: number;
  /** The registry credentials the sandbox's image was pulled with (a restore may need them again). */
  registryCredentialsId: string | null;
  /** The runtime driver that stored it; only that driver can restore it. */
  runtimeDriver: string;
  /** The deployment (`CORRAL_INSTANCE_ID`) whose runtime holds its data. */
  runtimeOwner: string;
  /** The replica (`CORRAL_REPLICA_ID`) that ran the capture. */
  replicaId: string;
  /** The driver's handle (`RuntimeCheckpoint.ref`); null until DURABLE. */
  runtimeRef: string | null;
  /** Bytes stored for this checkpoint alone (what it adds over its parent and the image); 0 until DURABLE. */
  sizeBytes: number;
  /** Running processes and their memory were (or are to be) captured too. */
  memory: boolean;
  /** Why it FAILED; null otherwise. */
  error: string | null;
  createdAt: string;
  updatedAt: string;
  /** When retention (`CORRAL_CHECKPOINT_RETENTION_HOURS`) deletes it; null: kept until deleted. */
  expiresAt: string | null;
}

/** What a state change may set besides `state`. */
export type CheckpointPatch = Partial<Pick<CheckpointRecord, 'state' | 'parentId' | 'depth' | 'runtimeRef' | 'sizeBytes' | 'error'>>;

/** Which checkpoints a listing covers; every field narrows the set. */
export interface CheckpointFilter {
  /** Only this sandbox's. */
  sandboxId?: string;
  /** Only these ids. */
  ids?: readonly string[];
  /** Checkpoints owned by `userId`, or of one of `teamIds` (what a caller may see). */
  visibleTo?: { userId: string; teamIds: readonly string[] };
  /** Only this owner's. */
  userId?: string;
  states?: readonly CheckpointState[];
  /** Only of deployment `runtimeOwner`. */
  runtimeOwner?: string;
  /** Only those whose `expiresAt` is before this ISO time. */
  expiredBefore?: string;
}
