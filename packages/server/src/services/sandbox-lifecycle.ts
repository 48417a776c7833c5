import type { Logger } from 'pino';
import type { CorralConfig } from '../config.js';
import { ApiError } from '../errors/api-error.js';
import { RUNTIME_FAILURES } from '../errors/error-codes.js';
import { RuntimeError, type RuntimeEvent, type SandboxRuntime, type SandboxSpec } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import { nowIso, toMillis } from '../util/time.js';
import { AdmissionQueue } from './admission-queue.js';
import type { CorralMetrics } from './corral-metrics.js';
import type { SandboxEvents } from './sandbox-events.js';
import { EgressApplier, egressPolicyOf, enforcesEgress, isOpenEgress } from './egress-applier.js';
import { ACTIVE_STATUSES, DISK_MOUNT_PATH, TERMINAL_STATUSES, type SandboxPatch, type SandboxRecord } from '../records/sandbox-records.js';

const GIB = 1024 ** 3;

/**
 * The runtime spec for a stored sandbox. On a driver that enforces egress policies every sandbox
 * is wired for network and gets its policy (unless open): the driver keeps one with an empty allow
 * list to `lo` and no route, and can open it later. On one that does not, a sandbox without network
 * (`network_access: false` or an empty allow list at create) gets `networkAccess: false`: only `lo`,
 * for good.
 */
export function specFor(sandbox: SandboxRecord, pidsLimit: number, enforcesPolicies: boolean): SandboxSpec {
  const policy = egressPolicyOf(sandbox);
  const wired = sandbox.networkAccess || enforcesPolicies;
  return {
    ...(wired && !isOpenEgress(policy) ? { egress: policy } : {}),
    sandboxId: sandbox.id,
    image: sandbox.dockerImage,
    startCommand: sandbox.startCommand,
    env: { ...(sandbox.environmentVars ?? {}), ...(sandbox.secrets ?? {}) },
    cpuCores: sandbox.cpuCores,
    memoryBytes: Math.round(sandbox.memoryGb * GIB),
    diskBytes: Math.round(sandbox.diskSizeGb * GIB),
    pidsLimit,
    networkAccess: wired,
    gpuCount: sandbox.gpuCount,
    gpuType: sandbox.gpuType,
    workspacePath: DISK_MOUNT_PATH,
  };
}

/** 409 `SANDBOX_NOT_RUNNING` for a pause or resume of a sandbox in the wrong status. */
function notRunning(sandboxId: string, status: string, verb: 'paused' | 'resumed'): ApiError {
  const can = verb === 'paused' ? 'RUNNING' : 'PAUSED';
  return new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${sandboxId} is ${status}; only a ${can} sandbox can be ${verb}`);
}

/**
 * Moves sandboxes through their lifecycle against the runtime: provisioning, exits and
 * termination. Every status change is a compare-and-set on the store, so a delete that races
 * a provisioning start never leaves a container behind: whoever loses the race removes it.
 */
export class SandboxLifecycle {
  private readonly inFlight = new Map<string, Promise<void>>();
  /** Row reads of `provision(id)` calls not yet in the queue. */
  private readonly lookups = new Set<Promise<void>>();
  private readonly unsubscribe: (() => void) | null;
  /**
   * Admits creates: at most `maxConcurrentProvisioning` provision at once, and only what fits the
   * driver's capacity × overcommit; the rest wait, PENDING, round-robin across users. Null without a runtime.
   */
  readonly admission: AdmissionQueue | null;
  /** Hands egress policies to the runtime; the reconciler and the egress routes use it too. */
  readonly egress: EgressApplier;
  /** The last pause or resume of each sandbox this process runs, so they apply one after another. */
  private readonly pauseChains = new Map<string, Promise<unknown>>();
  private readonly metrics: CorralMetrics | undefined;
  /** Sandbox events (`GET …/events`): services record creates and policy changes here; status changes record themselves. */
  readonly events: SandboxEvents | null;

  constructor(
    private readonly store: Store,
    readonly runtime: SandboxRuntime | null,
    private readonly config: CorralConfig,
    private readonly log: Logger,
    options: {
      /** How often waiting creates re-read the reservations (default 30 s). */ admissionResyncMs?: number;
      /** Where start stages and failures are recorded; none when absent. */ metrics?: CorralMetrics;
      /** The sandbox event log the services record into; none when absent. */ events?: SandboxEvents;
    } = {},
  ) {
    this.metrics = options.metrics;
    this.events = options.events ?? null;
    this.unsubscribe = runtime ? runtime.onEvent((event) => void this.onRuntimeEvent(event)) : null;
    this.admission = runtime ? new AdmissionQueue(store, runtime, config, log, (id) => this.startProvisioning(runtime, id), options.admissionResyncMs) : null;
    this.egress = new EgressApplier(store, runtime, log, config.instanceId);
  }

  /** The deployment (`CORRAL_INSTANCE_ID`) whose sandboxes this lifecycle runs. */
  get instanceId(): string {
    return this.config.instanceId;
  }

  /** This process among the deployment's replicas (`CORRAL_REPLICA_ID`): what its provisioning claims name. */
  get replicaId(): string {
    return this.config.replicaId;
  }

  /**
   * Whether this process is provisioning the sandbox right now, or has it waiting only for a
   * provisioning slot (not for capacity): what a held create waits for.
   */
  isProvisioning(id: string): boolean {
    return this.inFlight.has(id) || (this.admission?.waitsOnlyForSlot(id) ?? false);
  }

  /** Whether this process is provisioning the sandbox or has it in its admission queue. */
  isTracked(id: string): boolean {
    return this.inFlight.has(id) || (this.admission?.has(id) ?? false);
  }

  /** Sandboxes this process is provisioning now. */
  get provisioningInFlight(): number {
    return this.inFlight.size;
  }

  /** Sandboxes waiting in the admission queue (still PENDING). */
  get provisioningQueued(): number {
    return this.admission?.queued ?? 0;
  }

  /**
   * Why a sandbox of this process still waits to be admitted (see `AdmissionQueue.reasonOf`), or
   * undefined. What the API shows as the PENDING sandbox's `errorMessage`.
   */
  admissionReason(id: string): string | undefined {
    return this.admission?.reasonOf(id);
  }

  /**
   * Puts a PENDING sandbox in the admission queue: it provisions in the background once a
   * provisioning slot is free and it fits the capacity (round-robin across users, first in first
   * out within one; it stays PENDING while it waits). Without a runtime, the sandbox stays PENDING.
   * Given an id, the row is read first.
   */
  provision(sandbox: string | SandboxRecord): void {
    const admission = this.admission;
    if (!admission) return;
    const id = typeof sandbox === 'string' ? sandbox : sandbox.id;
    if (this.isTracked(id)) return;
    if (typeof sandbox !== 'string') {
      if (sandbox.status === 'PENDING') admission.enqueue(sandbox);
      return;
    }
    const lookup = this.store.getSandbox(id).then(
      (row) => {
        if (row && row.status === 'PENDING' && !this.isTracked(id)) admission.enqueue(row);
      },
      (error: unknown) => this.log.error({ err: error, sandboxId: id }, 'could not read a sandbox to provision'),
    );
    this.lookups.add(lookup);
    void lookup.finally(() => this.lookups.delete(lookup));
  }

  /** Provisions an admitted sandbox; its slot frees when provisioning is over. */
  private startProvisioning(runtime: SandboxRuntime, sandboxId: string): void {
    const task = this.runProvision(runtime, sandboxId)
      .then((started) => {
        // Ended (or gone) before it could start: it holds no share of the capacity.
        if (!started) this.admission?.release(sandboxId);
      })
      .catch((error: unknown) => this.log.error({ err: error, sandboxId }, 'provisioning failed unexpectedly'))
      .finally(() => {
        this.inFlight.delete(sandboxId);
        this.admission?.finished(sandboxId);
      });
    this.inFlight.set(sandboxId, task);
  }

  /**
   * Provisions one sandbox; false when it was no longer PENDING/PROVISIONING, or another live
   * replica holds its provisioning (nothing was started). Every write is fenced on this replica
   * still holding the claim: when another replica adopted the work (this one's heartbeat lapsed),
   * this one writes nothing and leaves the container to it (names are per sandbox, so it is the
   * same container the adopter replaces or adopts).
   */
  private async runProvision(runtime: SandboxRuntime, sandboxId: string): Promise<boolean> {
    const me = this.replicaId;
    const sandbox = await this.store.claimProvisioning(sandboxId, me, { status: 'PROVISIONING', runtimeDriver: runtime.name });
    if (!sandbox) return false;
    const claimedAt = Date.now();
    const createdAt = toMillis(sandbox.createdAt);
    this.metrics?.startup('queued', runtime.name, claimedAt - createdAt);
    let runtimeId: string;
    let kubernetesJobId: string | null;
    try {
      const spec = specFor(sandbox, this.config.pidsLimit, enforcesEgress(runtime));
      if (spec.egress && !enforcesEgress(runtime)) {
        throw new RuntimeError('UNSUPPORTED', `The ${runtime.name} runtime driver does not enforce egress policies; the sandbox was not started unrestricted`);
      }
      if (sandbox.registryCredentialsId !== null) {
        const credential = await this.store.getRegistryCredential(sandbox.registryCredentialsId);
        if (!credential) throw new RuntimeError('IMAGE_PULL_FAILED', `Registry credentials ${sandbox.registryCredentialsId} no longer exist`);
        spec.registryAuth = { username: credential.username, password: credential.password, serverAddress: credential.server };
      }
      if (sandbox.checkpointId !== null) {
        // A restore: the driver starts it from the checkpoint's layers (deleted meanwhile: it cannot start).
        const checkpoint = await this.store.getCheckpoint(sandbox.checkpointId);
        if (!checkpoint || checkpoint.state !== 'DURABLE' || checkpoint.runtimeRef === null) {
          throw new RuntimeError('CHECKPOINT_FAILED', `Checkpoint ${sandbox.checkpointId} is ${checkpoint?.state ?? 'gone'}; the sandbox cannot be restored from it`);
        }
        spec.checkpoint = { ref: checkpoint.runtimeRef, memory: checkpoint.memory };
      }
      const created = await runtime.create(spec);
      this.metrics?.startup('runtime_create', runtime.name, Date.now() - claimedAt);
      runtimeId = created.runtimeId;
      kubernetesJobId = created.kubernetesJobId ?? null;
    } catch (error) {
      const kind = error instanceof RuntimeError ? error.kind : 'RUNTIME_ERROR';
      const errorType = RUNTIME_FAILURES[kind].startErrorType;
      const message = error instanceof Error ? error.message : String(error);
      this.log.warn({ sandboxId, errorType, message }, 'sandbox failed to start');
      this.metrics?.startFailures.inc({ driver: runtime.name, error_type: errorType });
      const failed = await this.store.updateSandbox(
        sandboxId,
        { status: 'ERROR', errorType, errorMessage: message, terminatedAt: nowIso(), terminationReason: 'start_failed' },
        ['PROVISIONING'],
        me,
      );
      if (failed || !(await this.adoptedElsewhere(sandboxId))) await this.removeBySandboxId(sandboxId);
      return true;
    }
    const now = nowIso();
    this.egress.noteCreated(sandboxId, sandbox.egressGeneration);
    const running = await this.store.updateSandbox(
      sandboxId,
      { status: 'RUNNING', runtimeId, kubernetesJobId, startedAt: now, lastActivityAt: now, egressAppliedGeneration: sandbox.egressGeneration },
      ['PROVISIONING'],
      me,
    );
    if (running) this.metrics?.startup('total', runtime.name, Date.now() - createdAt);
    if (running && running.egressGeneration > sandbox.egressGeneration) {
      // The policy changed while the container was starting: apply the newer one now (the reconciler retries).
      this.egress.apply(sandboxId).catch(() => undefined);
    }
    if (!running) {
      this.egress.forget(sandboxId);
      if (await this.adoptedElsewhere(sandboxId)) {
        this.log.warn({ sandboxId, replicaId: me }, 'another replica adopted this provisioning (this replica\'s heartbeat lapsed); leaving the container to it');
        return true;
      }
      // Deleted (or timed out) while the container was starting: it must not outlive its row.
      await this.store.updateSandbox(sandboxId, { runtimeId }, TERMINAL_STATUSES);
      await this.removeQuietly(runtimeId);
    }
    return true;
  }

  /** Whether another replica now holds the provisioning of a sandbox that is still starting. */
  private async adoptedElsewhere(sandboxId: string): Promise<boolean> {
    const row = await this.store.getSandbox(sandboxId);
    return row !== undefined && ACTIVE_STATUSES.includes(row.status) && row.provisioner !== null && row.provisioner !== this.replicaId;
  }

  /**
   * Claims a starting sandbox's provisioning for this replica (see `Store.claimProvisioning`):
   * the reconciler adopts the work of a replica whose heartbeat lapsed this way.
   */
  claim(sandboxId: string): Promise<SandboxRecord | undefined> {
    return this.store.claimProvisioning(sandboxId, this.replicaId);
  }

  /**
   * Ends a sandbox: sets a terminal status if it is still active, then removes its container —
   * also when it had ended before (an exited sandbox keeps its container for its logs until then).
   * Returns the updated row, or undefined when it had already ended.
   */
  async terminate(sandbox: SandboxRecord, patch: SandboxPatch): Promise<SandboxRecord | undefined> {
    const ended = await this.store.updateSandbox(sandbox.id, { terminatedAt: nowIso(), ...patch }, ACTIVE_STATUSES);
    this.egress.forget(sandbox.id);
    const current = ended ?? (await this.store.getSandbox(sandbox.id));
    if (current?.runtimeId) await this.removeContainer(current.id, current.runtimeId);
    return ended;
  }

  /**
   * Pauses a RUNNING sandbox: the driver freezes its processes, then the row becomes PAUSED with
   * `pausedAt` (compare-and-set from RUNNING). A PAUSED sandbox is returned as it is. 409
   * `SANDBOX_NOT_RUNNING` for any other status, or when it ended meanwhile; 409
   * `PAUSE_UNSUPPORTED` when the driver cannot pause (`capabilities().pause`).
   */
  pause(sandboxId: string): Promise<SandboxRecord> {
    const runtime = this.pausingRuntime();
    return this.inPauseOrder(sandboxId, async () => {
      const row = await this.store.getSandbox(sandboxId);
      if (row?.status === 'PAUSED') return row;
      const runtimeId = this.pausableRuntimeId(row, 'RUNNING', sandboxId);
      await this.runtimeCall(sandboxId, () => runtime.pause(runtimeId));
      const paused = await this.store.updateSandbox(sandboxId, { status: 'PAUSED', pausedAt: nowIso() }, ['RUNNING']);
      if (paused) return paused;
      // Ended while it froze: its removal thaws and kills it.
      const now = await this.store.getSandbox(sandboxId);
      throw notRunning(sandboxId, now?.status ?? 'TERMINATED', 'paused');
    });
  }

  /**
   * Resumes a PAUSED sandbox: the driver thaws it, then the row becomes RUNNING again with the
   * time it was paused added to `pausedMs` (its lifetime deadline moves by that much) and to
   * `lastActivityAt` (its idle timer continues with what was left). A RUNNING sandbox is returned
   * as it is; 409 `SANDBOX_NOT_RUNNING` for any other status; 409 `PAUSE_UNSUPPORTED` as `pause`.
   */
  resume(sandboxId: string): Promise<SandboxRecord> {
    const runtime = this.pausingRuntime();
    return this.inPauseOrder(sandboxId, async () => {
      const row = await this.store.getSandbox(sandboxId);
      if (row?.status === 'RUNNING') return row;
      const runtimeId = this.pausableRuntimeId(row, 'PAUSED', sandboxId);
      await this.runtimeCall(sandboxId, () => runtime.resume(runtimeId));
      const paused = row as SandboxRecord;
      const now = Date.now();
      const pausedFor = Math.max(0, now - (paused.pausedAt ? toMillis(paused.pausedAt) : now));
      const lastActivityAt = paused.lastActivityAt ? new Date(Math.min(now, toMillis(paused.lastActivityAt) + pausedFor)).toISOString() : null;
      const resumed = await this.store.updateSandbox(
        sandboxId,
        { status: 'RUNNING', pausedAt: null, pausedMs: paused.pausedMs + pausedFor, ...(lastActivityAt ? { lastActivityAt } : {}) },
        ['PAUSED'],
      );
      if (resumed) return resumed;
      const current = await this.store.getSandbox(sandboxId);
      throw notRunning(sandboxId, current?.status ?? 'TERMINATED', 'resumed');
    });
  }

  /** The runtime, when it can pause; else 409 `PAUSE_UNSUPPORTED`. */
  private pausingRuntime(): Required<Pick<SandboxRuntime, 'pause' | 'resume'>> {
    const runtime = this.runtime;
    if (!runtime?.capabilities().pause || !runtime.pause || !runtime.resume) {
      throw new ApiError('PAUSE_UNSUPPORTED', `The ${runtime?.name ?? 'none'} runtime driver cannot pause sandboxes`);
    }
    return { pause: runtime.pause.bind(runtime), resume: runtime.resume.bind(runtime) };
  }

  /** Runs pause/resume work of one sandbox after the previous one of this process. */
  private inPauseOrder<T>(sandboxId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.pauseChains.get(sandboxId) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(work);
    this.pauseChains.set(sandboxId, next);
    void next.catch(() => undefined).finally(() => {
      if (this.pauseChains.get(sandboxId) === next) this.pauseChains.delete(sandboxId);
    });
    return next;
  }

  /** The runtime id of a row in `status`, or 409 `SANDBOX_NOT_RUNNING` (404 when the row is gone). */
  private pausableRuntimeId(row: SandboxRecord | undefined, status: 'RUNNING' | 'PAUSED', sandboxId: string): string {
    if (!row) throw ApiError.sandboxNotFound(sandboxId);
    if (row.status !== status || !row.runtimeId) throw notRunning(sandboxId, row.status, status === 'RUNNING' ? 'paused' : 'resumed');
    return row.runtimeId;
  }

  /** A driver call for pause/resume: a sandbox the driver no longer runs is 409 `SANDBOX_NOT_RUNNING`. */
  private async runtimeCall(sandboxId: string, call: () => Promise<void>): Promise<void> {
    try {
      await call();
    } catch (error) {
      if (error instanceof RuntimeError && error.kind === 'NOT_FOUND') {
        throw new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${sandboxId} is no longer running: ${error.message}`);
      }
      throw error;
    }
  }

  /** Removes an ended sandbox's container and forgets its handle, so later deletes cost nothing. */
  private async removeContainer(sandboxId: string, runtimeId: string): Promise<void> {
    if (!this.runtime) return;
    try {
      await this.runtime.remove(runtimeId);
      await this.store.updateSandbox(sandboxId, { runtimeId: null }, TERMINAL_STATUSES);
    } catch (error) {
      this.log.warn({ err: error, runtimeId }, 'could not remove container; the reconciler will retry');
    }
  }

  /** Records an exit the runtime reported, unless the sandbox already ended. */
  async recordExit(sandboxId: string, exitCode: number, oomKilled: boolean): Promise<void> {
    const patch: SandboxPatch = oomKilled
      ? {
          status: 'ERROR',
          errorType: 'OOM_KILLED',
          errorMessage: 'The sandbox ran out of memory and was killed; ask for more memory_gb',
          exitCode,
          terminationReason: 'oom_killed',
          terminatedAt: nowIso(),
        }
      : { status: 'TERMINATED', exitCode, terminationReason: 'exited', terminatedAt: nowIso() };
    await this.store.updateSandbox(sandboxId, patch, ['RUNNING', 'PROVISIONING', 'PAUSED']);
    this.egress.forget(sandboxId);
  }

  private async onRuntimeEvent(event: RuntimeEvent): Promise<void> {
    try {
      if (event.type === 'exited') await this.recordExit(event.sandboxId, event.exitCode, event.oomKilled);
      else if (event.type === 'image-pulled' && this.runtime) this.metrics?.observeImagePull(this.runtime.name, event);
    } catch (error) {
      this.log.error({ err: error, event }, 'could not record runtime event');
    }
  }

  /** Removes a container, logging instead of throwing: the reconciler retries leftovers. True when it is gone. */
  async removeQuietly(runtimeId: string): Promise<boolean> {
    if (!this.runtime) return true;
    try {
      await this.runtime.remove(runtimeId);
      return true;
    } catch (error) {
      this.log.warn({ err: error, runtimeId }, 'could not remove container; the reconciler will retry');
      return false;
    }
  }

  private async removeBySandboxId(sandboxId: string): Promise<void> {
    if (!this.runtime) return;
    try {
      for (const state of await this.runtime.list()) {
        if (state.sandboxId === sandboxId) await this.removeQuietly(state.runtimeId);
      }
    } catch (error) {
      this.log.warn({ err: error, sandboxId }, 'could not list containers for cleanup');
    }
  }

  /**
   * Waits for in-flight provisioning, and for the creates that wait only for a provisioning slot
   * to be provisioned too; creates still waiting for capacity stay PENDING (the next start queues
   * them again). Then stops admitting and listening to runtime events.
   */
  async close(): Promise<void> {
    await this.admission?.load();
    while (this.lookups.size > 0 || this.inFlight.size > 0) {
      await Promise.allSettled([...this.lookups, ...this.inFlight.values()]);
    }
    this.admission?.close();
    await this.egress.settle();
    this.unsubscribe?.();
  }
}
