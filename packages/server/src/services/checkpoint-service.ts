import type { Logger } from 'pino';
import type { CorralConfig } from '../config.js';
import { ApiError } from '../errors/api-error.js';
import { CAPTURING_STATES, type CheckpointRecord, type CheckpointState } from '../records/checkpoint-records.js';
import type { SandboxRecord } from '../records/sandbox-records.js';
import { RuntimeError, type CheckpointRequest, type RuntimeCheckpoint, type SandboxRuntime } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import { newId } from '../util/ids.js';
import { nowIso } from '../util/time.js';
import type { Principal } from './auth-service.js';
import type { CorralMetrics } from './corral-metrics.js';
import type { QuotaService } from './quota-service.js';
import type { SandboxEvents } from './sandbox-events.js';
import { truncateText } from './sandbox-events.js';
import { maySeeSandbox } from './sandbox-visibility.js';

/** The runtime's checkpoint calls, present. */
type CheckpointingRuntime = SandboxRuntime & Required<Pick<SandboxRuntime, 'checkpoint' | 'deleteCheckpoint'>>;

/** Why a capture this process no longer works on ended (the restart sweep). */
export const RESTARTED_DURING_CAPTURE = 'the server restarted during the capture';

/** The most checkpoint rows one sweep deletes or fails. */
const SWEEP_LIMIT = 500;

/**
 * The runtime when it can take checkpoints (and memory checkpoints when `memory`); else 409
 * `CHECKPOINT_UNSUPPORTED` / `MEMORY_CHECKPOINT_UNSUPPORTED`.
 */
export function checkpointingRuntime(runtime: SandboxRuntime | null, memory: boolean): CheckpointingRuntime {
  const capabilities = runtime?.capabilities();
  if (!runtime || !capabilities?.checkpoint || !runtime.checkpoint || !runtime.deleteCheckpoint) {
    throw new ApiError('CHECKPOINT_UNSUPPORTED', `The ${runtime?.name ?? 'none'} runtime driver cannot take or restore checkpoints`);
  }
  if (memory && !capabilities.memoryCheckpoint) {
    throw new ApiError(
      'MEMORY_CHECKPOINT_UNSUPPORTED',
      capabilities.memoryCheckpointUnavailable !== undefined
        ? `Memory checkpoints (memory: true) are unavailable on this server: ${capabilities.memoryCheckpointUnavailable}`
        : `The ${runtime.name} runtime driver captures filesystems only: memory checkpoints (memory: true) need a driver that can capture processes (CRIU)`,
    );
  }
  return runtime as CheckpointingRuntime;
}

/** Whether the caller may see a checkpoint: as for sandboxes, its owner or an admin of its team. */
export function maySeeCheckpoint(caller: Principal, checkpoint: CheckpointRecord): boolean {
  return maySeeSandbox(caller.user.id, caller.teams, checkpoint);
}

/** The teams whose checkpoints (and sandboxes) the caller sees: those they administer. */
function adminTeams(caller: Principal): string[] {
  return [...caller.teams].filter(([, role]) => role === 'admin').map(([id]) => id);
}

/**
 * A checkpoint a create may restore: visible to the caller (else 404 `CHECKPOINT_NOT_FOUND`, the
 * same answer as for one that does not exist), DURABLE (else 409 `CHECKPOINT_NOT_DURABLE`), made
 * by this runtime driver and deployment (else 409 `CHECKPOINT_UNSUPPORTED`).
 */
export async function restorableCheckpoint(store: Store, runtime: SandboxRuntime | null, instanceId: string, caller: Principal, id: string): Promise<CheckpointRecord> {
  const checkpoint = await store.getCheckpoint(id);
  if (!checkpoint || !maySeeCheckpoint(caller, checkpoint)) throw checkpointNotFound(id);
  const capable = checkpointingRuntime(runtime, checkpoint.memory);
  if (checkpoint.state !== 'DURABLE' || checkpoint.runtimeRef === null) {
    throw new ApiError('CHECKPOINT_NOT_DURABLE', `Checkpoint ${id} is ${checkpoint.state}; only a DURABLE checkpoint can be restored or forked`);
  }
  if (checkpoint.runtimeDriver !== capable.name || checkpoint.runtimeOwner !== instanceId) {
    throw new ApiError('CHECKPOINT_UNSUPPORTED', `Checkpoint ${id} was stored by the ${checkpoint.runtimeDriver} runtime driver of another deployment; this one cannot restore it`);
  }
  return checkpoint;
}

function checkpointNotFound(id: string): ApiError {
  return new ApiError('CHECKPOINT_NOT_FOUND', `Checkpoint ${id} not found`);
}

/** What `CheckpointService` is built with besides the store and runtime. */
export interface CheckpointServiceOptions {
  /** Where capture durations go; none when absent. */
  metrics?: CorralMetrics;
  /** The sandbox timeline that checkpoint events go into; none when absent. */
  events?: SandboxEvents | null;
}

/**
 * Checkpoints of sandboxes (`docs/checkpoints.md`): takes them through the driver's `checkpoint()`
 * in the background (PENDING → FROZEN → DURABLE, or FAILED), one capture at a time per sandbox in
 * this process; reads, lists and deletes them for callers who may see them; and sweeps what no
 * process works on any more (captures cut by a restart → FAILED, DELETING rows, expired ones).
 */
export class CheckpointService {
  /** Captures this process runs (or is about to), by checkpoint id. */
  private readonly inFlight = new Map<string, Promise<CheckpointRecord | undefined>>();
  /** The last capture of each sandbox in this process, so they run one after another. */
  private readonly chains = new Map<string, Promise<unknown>>();
  /** Deletes of driver data in flight (the sweep and callers), so `close` waits for them. */
  private readonly deletes = new Set<Promise<unknown>>();
  private readonly metrics: CorralMetrics | undefined;
  private readonly events: SandboxEvents | null;

  constructor(
    private readonly store: Store,
    private readonly runtime: SandboxRuntime | null,
    private readonly quotas: QuotaService,
    private readonly config: CorralConfig,
    private readonly log: Logger,
    options: CheckpointServiceOptions = {},
  ) {
    this.metrics = options.metrics;
    this.events = options.events ?? null;
  }

  /**
   * Starts a checkpoint of a RUNNING or PAUSED sandbox and returns it PENDING; the capture runs in
   * the background. 404 for a sandbox the caller may not see; 409 `SANDBOX_NOT_RUNNING`,
   * `CHECKPOINT_UNSUPPORTED`, `MEMORY_CHECKPOINT_UNSUPPORTED`; 403 `QUOTA_EXCEEDED` when the
   * owner's disk quota is used up or they hold `CORRAL_MAX_CHECKPOINTS_PER_USER` checkpoints.
   */
  async checkpoint(caller: Principal, sandboxId: string, options: { memory: boolean }): Promise<CheckpointRecord> {
    const runtime = checkpointingRuntime(this.runtime, options.memory);
    const sandbox = await this.store.getSandbox(sandboxId);
    if (!sandbox || !maySeeSandbox(caller.user.id, caller.teams, sandbox)) throw ApiError.sandboxNotFound(sandboxId);
    capturable(sandbox);
    await this.checkLimits(sandbox);
    const parent = await this.parentOf(sandbox, null);
    const now = nowIso();
    const retention = this.config.checkpointRetentionHours;
    const record: CheckpointRecord = {
      id: newId(),
      sandboxId,
      parentId: parent?.id ?? null,
      depth: (parent?.depth ?? 0) + 1,
      userId: sandbox.userId,
      teamId: sandbox.teamId,
      state: 'PENDING',
      dockerImage: sandbox.dockerImage,
      diskSizeGb: sandbox.diskSizeGb,
      registryCredentialsId: sandbox.registryCredentialsId,
      runtimeDriver: runtime.name,
      runtimeOwner: this.config.instanceId,
      replicaId: this.config.replicaId,
      runtimeRef: null,
      sizeBytes: 0,
      memory: options.memory,
      error: null,
      createdAt: now,
      updatedAt: now,
      expiresAt: retention > 0 ? new Date(Date.parse(now) + retention * 3_600_000).toISOString() : null,
    };
    // Tracked before the row exists, so a sweep never takes it for a capture nobody runs.
    let begin = (): void => {};
    const started = new Promise<void>((resolve) => (begin = resolve));
    const capture = started.then(() => this.inOrder(sandboxId, () => this.capture(runtime, record)));
    this.inFlight.set(record.id, capture);
    void capture.finally(() => this.inFlight.delete(record.id));
    try {
      await this.store.insertCheckpoint(record);
    } catch (error) {
      this.inFlight.delete(record.id);
      throw error;
    }
    this.events?.record(sandboxId, 'checkpoint.created', { checkpointId: record.id, memory: record.memory, parentId: record.parentId }, { userId: caller.user.id, keyId: caller.apiKeyId });
    begin();
    return record;
  }

  /**
   * Resolves with the checkpoint once this process's capture of it ended (DURABLE or FAILED), or
   * at once with the row as it is when no capture of it runs here.
   */
  async settled(id: string): Promise<CheckpointRecord | undefined> {
    await this.inFlight.get(id)?.catch(() => undefined);
    return this.store.getCheckpoint(id);
  }

  /** A checkpoint the caller may see, or 404 `CHECKPOINT_NOT_FOUND`. */
  async get(caller: Principal, id: string): Promise<CheckpointRecord> {
    const checkpoint = await this.store.getCheckpoint(id);
    if (!checkpoint || !maySeeCheckpoint(caller, checkpoint)) throw checkpointNotFound(id);
    return checkpoint;
  }

  /**
   * A sandbox's checkpoints, newest first (only `checkpointId` when given). 404 for a sandbox the
   * caller may not see; a sandbox that is gone (purged) still lists the checkpoints the caller may see.
   */
  async listForSandbox(caller: Principal, sandboxId: string, checkpointId: string | null): Promise<CheckpointRecord[]> {
    const sandbox = await this.store.getSandbox(sandboxId);
    if (sandbox && !maySeeSandbox(caller.user.id, caller.teams, sandbox)) throw ApiError.sandboxNotFound(sandboxId);
    const { checkpoints } = await this.store.listCheckpoints(
      { sandboxId, visibleTo: { userId: caller.user.id, teamIds: adminTeams(caller) }, ...(checkpointId !== null ? { ids: [checkpointId] } : {}) },
      1,
      1000,
    );
    if (!sandbox && checkpoints.length === 0) throw ApiError.sandboxNotFound(sandboxId);
    return checkpoints;
  }

  /** Every checkpoint the caller may see (their own, and their administered teams'), newest first. */
  listVisible(caller: Principal, page: number, perPage: number, states?: readonly CheckpointState[]): Promise<{ checkpoints: CheckpointRecord[]; total: number }> {
    return this.store.listCheckpoints({ visibleTo: { userId: caller.user.id, teamIds: adminTeams(caller) }, ...(states ? { states } : {}) }, page, perPage);
  }

  /**
   * Deletes a checkpoint the caller may see: DELETING, then the driver deletes its data, then the
   * row goes (a failed driver delete leaves it DELETING, `gone` false; the sweep retries). 409 `CHECKPOINT_BUSY`
   * while its capture runs. Sandboxes restored from it keep running (the driver keeps what they use).
   */
  async delete(caller: Principal, id: string): Promise<{ checkpoint: CheckpointRecord; gone: boolean }> {
    const checkpoint = await this.get(caller, id);
    if (CAPTURING_STATES.includes(checkpoint.state)) {
      throw new ApiError('CHECKPOINT_BUSY', `Checkpoint ${id} is ${checkpoint.state}: its capture still runs; delete it once it is DURABLE or FAILED`);
    }
    const deleting = await this.store.updateCheckpoint(id, { state: 'DELETING' }, ['DURABLE', 'FAILED', 'DELETING']);
    if (!deleting) throw new ApiError('CHECKPOINT_BUSY', `Checkpoint ${id} changed while it was being deleted; try again`);
    const gone = await this.track(this.purge(deleting, 'deleted', { userId: caller.user.id, keyId: caller.apiKeyId }));
    return { checkpoint: deleting, gone };
  }

  /**
   * One pass over what no process works on: PENDING and FROZEN checkpoints of this deployment
   * whose capture neither this process nor a live replica (`liveReplicas`) runs → FAILED ("the
   * server restarted during the capture"); DELETING ones → deleted again; with a retention set,
   * checkpoints past `expiresAt` → deleted. Returns how many rows it changed.
   */
  async sweep(now: number, liveReplicas: ReadonlySet<string>): Promise<number> {
    let changed = 0;
    const owner = this.config.instanceId;
    const capturing = await this.store.listCheckpoints({ runtimeOwner: owner, states: CAPTURING_STATES }, 1, SWEEP_LIMIT);
    for (const checkpoint of capturing.checkpoints) {
      if (this.inFlight.has(checkpoint.id)) continue;
      if (checkpoint.replicaId !== this.config.replicaId && liveReplicas.has(checkpoint.replicaId)) continue;
      const failed = await this.store.updateCheckpoint(checkpoint.id, { state: 'FAILED', error: RESTARTED_DURING_CAPTURE }, CAPTURING_STATES);
      if (failed) {
        changed += 1;
        this.events?.record(failed.sandboxId, 'checkpoint.failed', { checkpointId: failed.id, error: RESTARTED_DURING_CAPTURE });
      }
    }
    const deleting = await this.store.listCheckpoints({ runtimeOwner: owner, states: ['DELETING'] }, 1, SWEEP_LIMIT);
    for (const checkpoint of deleting.checkpoints) if (await this.track(this.purge(checkpoint, 'deleted', null))) changed += 1;
    const expired = await this.store.listCheckpoints({ runtimeOwner: owner, states: ['DURABLE', 'FAILED'], expiredBefore: new Date(now).toISOString() }, 1, SWEEP_LIMIT);
    for (const checkpoint of expired.checkpoints) {
      const marked = await this.store.updateCheckpoint(checkpoint.id, { state: 'DELETING' }, ['DURABLE', 'FAILED']);
      if (marked && (await this.track(this.purge(marked, 'expired', null)))) changed += 1;
    }
    return changed;
  }

  /** This deployment's checkpoints by state (the `corral_checkpoints` gauge). */
  countByState(): Promise<Array<{ state: string; count: number }>> {
    return this.store.countCheckpoints(this.config.instanceId);
  }

  /** Waits for the captures and deletes this process runs. */
  async close(): Promise<void> {
    while (this.inFlight.size > 0 || this.deletes.size > 0) {
      await Promise.allSettled([...this.inFlight.values(), ...this.deletes]);
    }
  }

  /** Refuses a checkpoint past the owner's count limit or disk quota (403 `QUOTA_EXCEEDED`). */
  private async checkLimits(sandbox: SandboxRecord): Promise<void> {
    const max = this.config.maxCheckpointsPerUser;
    if (max > 0) {
      const { total } = await this.store.listCheckpoints({ userId: sandbox.userId, states: ['PENDING', 'FROZEN', 'DURABLE', 'DELETING'] }, 1, 1);
      if (total >= max) {
        throw new ApiError('QUOTA_EXCEEDED', `Quota exceeded: the sandbox's owner holds ${total} checkpoints, the most allowed (CORRAL_MAX_CHECKPOINTS_PER_USER=${max}); delete some first`);
      }
    }
    await this.quotas.checkCheckpointDisk(sandbox.userId, sandbox.teamId);
  }

  /**
   * The checkpoint a new one of `sandbox` is stored on top of: its newest DURABLE one (but
   * `exclude`), else the checkpoint it was restored from (when it still exists).
   */
  private async parentOf(sandbox: SandboxRecord, exclude: string | null): Promise<CheckpointRecord | undefined> {
    const { checkpoints } = await this.store.listCheckpoints({ sandboxId: sandbox.id, states: ['DURABLE'] }, 1, 2);
    const newest = checkpoints.find((c) => c.id !== exclude);
    if (newest) return newest;
    if (sandbox.checkpointId === null) return undefined;
    const restoredFrom = await this.store.getCheckpoint(sandbox.checkpointId);
    return restoredFrom?.state === 'DURABLE' ? restoredFrom : undefined;
  }

  /** Runs the captures of one sandbox one after another. */
  private inOrder<T>(sandboxId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(sandboxId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.chains.set(sandboxId, next);
    void next.catch(() => undefined).finally(() => {
      if (this.chains.get(sandboxId) === next) this.chains.delete(sandboxId);
    });
    return next;
  }

  /**
   * Runs one capture: the parent is settled now (an earlier capture of the sandbox may have
   * become DURABLE meanwhile), the driver captures, and the row becomes FROZEN, then DURABLE with
   * the driver's ref and size, or FAILED with the reason. Never throws.
   */
  private async capture(runtime: CheckpointingRuntime, record: CheckpointRecord): Promise<CheckpointRecord | undefined> {
    const started = performance.now();
    const id = record.id;
    try {
      const sandbox = await this.store.getSandbox(record.sandboxId);
      if (!sandbox || (sandbox.status !== 'RUNNING' && sandbox.status !== 'PAUSED') || !sandbox.runtimeId) {
        return await this.fail(record, started, `the sandbox is ${sandbox?.status ?? 'gone'}; only a RUNNING or PAUSED sandbox can be checkpointed`);
      }
      const parent = await this.parentOf(sandbox, id);
      if ((parent?.id ?? null) !== record.parentId) {
        await this.store.updateCheckpoint(id, { parentId: parent?.id ?? null, depth: (parent?.depth ?? 0) + 1 }, ['PENDING']);
      }
      const request: CheckpointRequest = {
        checkpointId: id,
        memory: record.memory,
        onFrozen: () => {
          this.store.updateCheckpoint(id, { state: 'FROZEN' }, ['PENDING']).catch((error: unknown) => this.log.warn({ err: error, checkpointId: id }, 'could not record a frozen checkpoint'));
        },
        ...(parent?.runtimeRef ? { parentRef: parent.runtimeRef } : {}),
      };
      let stored: RuntimeCheckpoint;
      try {
        stored = await runtime.checkpoint(sandbox.runtimeId, request);
      } catch (error) {
        const reason = error instanceof RuntimeError && error.kind === 'NOT_FOUND' ? `the sandbox is no longer running: ${error.message}` : error instanceof Error ? error.message : String(error);
        return await this.fail(record, started, reason);
      }
      const durable = await this.store.updateCheckpoint(id, { state: 'DURABLE', runtimeRef: stored.ref, sizeBytes: stored.sizeBytes, error: null }, CAPTURING_STATES);
      if (!durable) {
        // The row went (or failed) meanwhile: what the driver stored must not outlive it.
        await runtime.deleteCheckpoint(stored.ref).catch((error: unknown) => this.log.warn({ err: error, checkpointId: id }, 'could not delete an orphaned checkpoint'));
        return undefined;
      }
      const durationMs = performance.now() - started;
      this.metrics?.checkpointCaptureSeconds.observe({ driver: runtime.name, memory: String(record.memory), result: 'durable' }, durationMs / 1000);
      this.events?.record(record.sandboxId, 'checkpoint.durable', { checkpointId: id, sizeBytes: stored.sizeBytes, durationMs: Math.round(durationMs) });
      return durable;
    } catch (error) {
      this.log.error({ err: error, checkpointId: id }, 'checkpoint capture failed unexpectedly');
      return this.fail(record, started, error instanceof Error ? error.message : String(error)).catch(() => undefined);
    }
  }

  private async fail(record: CheckpointRecord, started: number, reason: string): Promise<CheckpointRecord | undefined> {
    const error = truncateText(reason);
    const failed = await this.store.updateCheckpoint(record.id, { state: 'FAILED', error }, CAPTURING_STATES);
    const durationMs = performance.now() - started;
    this.metrics?.checkpointCaptureSeconds.observe({ driver: record.runtimeDriver, memory: String(record.memory), result: 'failed' }, durationMs / 1000);
    if (failed) this.events?.record(record.sandboxId, 'checkpoint.failed', { checkpointId: record.id, error, durationMs: Math.round(durationMs) });
    this.log.warn({ checkpointId: record.id, sandboxId: record.sandboxId, error }, 'checkpoint failed');
    return failed;
  }

  /** Keeps a delete in {@link deletes} while it runs. */
  private track<T>(work: Promise<T>): Promise<T> {
    this.deletes.add(work);
    void work.catch(() => undefined).finally(() => this.deletes.delete(work));
    return work;
  }

  /**
   * Deletes a DELETING checkpoint's driver data, then its row. True when the row is gone; false
   * when the driver could not delete (it stays DELETING for the next sweep).
   */
  private async purge(checkpoint: CheckpointRecord, reason: 'deleted' | 'expired', actor: { userId: string; keyId: string | null } | null): Promise<boolean> {
    if (checkpoint.runtimeRef !== null) {
      const runtime = this.runtime;
      if (!runtime?.deleteCheckpoint || checkpoint.runtimeOwner !== this.config.instanceId) return false;
      try {
        await runtime.deleteCheckpoint(checkpoint.runtimeRef);
      } catch (error) {
        this.log.warn({ err: error, checkpointId: checkpoint.id }, 'could not delete a checkpoint\'s data; the next sweep retries');
        return false;
      }
    }
    const deleted = await this.store.deleteCheckpoint(checkpoint.id);
    if (deleted) this.events?.record(checkpoint.sandboxId, 'checkpoint.deleted', { checkpointId: checkpoint.id, reason }, actor);
    return deleted;
  }
}

/** 409 `SANDBOX_NOT_RUNNING` unless the sandbox is RUNNING or PAUSED with a container. */
function capturable(sandbox: SandboxRecord): void {
  if ((sandbox.status === 'RUNNING' || sandbox.status === 'PAUSED') && sandbox.runtimeId) return;
  throw new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${sandbox.id} is ${sandbox.status}; only a RUNNING or PAUSED sandbox can be checkpointed`);
}

