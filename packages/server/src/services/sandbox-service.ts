import type { CorralConfig } from '../config.js';
import { ApiError } from '../errors/api-error.js';
import { diskPolicyOf, diskShortfall } from '../runtime/disk-admission.js';
import { RuntimeError, type RuntimeStats } from '../runtime/runtime.js';
import type { SandboxFilter, Store } from '../store/store.js';
import { newId } from '../util/ids.js';
import { nowIso } from '../util/time.js';
import type { Principal } from './auth-service.js';
import type { GatewayTokens } from './gateway-tokens.js';
import { enforcesEgress, isOpenEgress } from './egress-applier.js';
import { checkEgressEntriesSupported, egressUnsupported, resolveCreateEgress } from './egress-service.js';
import type { ImageService } from './image-service.js';
import { QuotaExceededError, QuotaService } from './quota-service.js';
import type { RegistryCredentialsService } from './registry-credentials-service.js';
import type { SandboxLifecycle } from './sandbox-lifecycle.js';
import { type SandboxNetworkUsage, readInsideUsage } from './sandbox-stats.js';
import { isTerminal, type SandboxRecord, type SandboxStatus } from '../records/sandbox-records.js';
import { maySeeSandbox } from './sandbox-visibility.js';
import { restorableCheckpoint } from './checkpoint-service.js';

/** A validated create request, in the service's own terms. */
export interface CreateSandboxInput {
  name: string;
  /** Null when the request gave none: required, unless `checkpointId` is given (the checkpoint's image is used). */
  dockerImage: string | null;
  startCommand: string | { executable: string; args?: string[] } | null;
  cpuCores: number;
  memoryGb: number;
  /** Null when the request gave none: 10, or the checkpoint's disk size when restoring. */
  diskSizeGb: number | null;
  gpuCount: number;
  gpuType: string | null;
  vm: boolean;
  /**
   * Restore: start from this DURABLE checkpoint (visible to the caller); its image and disk size
   * are used, and a different `dockerImage` or `diskSizeGb` is refused (422).
   */
  checkpointId: string | null;
  /** The legacy switch; null when the request did not give it. `false` is `networkAllowlist: []`. */
  networkAccess: boolean | null;
  /** Only what it names is reachable; `[]`: no egress at all. Exclusive with `networkDenylist`. */
  networkAllowlist: string[] | null;
  /** Everything but what it names is reachable. */
  networkDenylist: string[] | null;
  timeoutMinutes: number;
  idleTimeoutMinutes: number | null;
  environmentVars: Record<string, string> | null;
  secrets: Record<string, string> | null;
  labels: string[];
  teamId: string | null;
  region: string | null;
  advancedConfigs: Record<string, unknown> | null;
  registryCredentialsId: string | null;
  guaranteed: boolean;
  idempotencyKey: string | null;
  /**
   * Corral extension: a create still waiting for capacity this many seconds after it was made
   * ends in ERROR (`ADMISSION_TIMEOUT`). Null: it waits as long as it takes.
   */
  admissionTimeoutSeconds: number | null;
}

/** A create with its image and disk size settled (from the request, or from the checkpoint it restores). */
type ResolvedCreate = CreateSandboxInput & { dockerImage: string; diskSizeGb: number };

/** `disk_size_gb` when a create gives none (Prime's default). */
const DEFAULT_DISK_SIZE_GB = 10;

/** Which sandboxes a listing covers, as the API's query names it. */
export interface ListSandboxesInput {
  teamId?: string;
  userId?: string;
  status?: SandboxStatus;
  isActive?: boolean;
  labels?: string[];
  page: number;
  perPage: number;
}

/** A bulk delete request. */
export interface BulkDeleteInput {
  sandboxIds: string[] | null;
  labels: string[] | null;
  teamId: string | null;
  userId: string | null;
  allUsers: boolean;
}

/** The most sandboxes one label-based bulk delete ends. */
const BULK_DELETE_LABEL_LIMIT = 10_000;

/** The deepest nesting and largest serialized size a free-form JSON field may have. */
const MAX_JSON_DEPTH = 32;
const MAX_JSON_BYTES = 64 * 1024;

/** Refuses free-form JSON that is nested too deeply or too large to store (422 naming the field). */
function checkJsonBounds(param: string, value: unknown): void {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (node === null || typeof node !== 'object') continue;
    if (depth > MAX_JSON_DEPTH) throw ApiError.invalid(param, `must not be nested more than ${MAX_JSON_DEPTH} levels deep`);
    for (const child of Object.values(node)) stack.push([child, depth + 1]);
  }
  if (Buffer.byteLength(JSON.stringify(value)) > MAX_JSON_BYTES) {
    throw ApiError.invalid(param, `must serialize to at most ${MAX_JSON_BYTES} bytes of JSON`);
  }
}

/** Quotes one word for `/bin/sh`. */
function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A structured `{executable, args}` start command as one shell string that runs exactly that argv. */
function startCommandString(command: CreateSandboxInput['startCommand']): string | null {
  if (command === null || typeof command === 'string') return command;
  return [command.executable, ...(command.args ?? [])].map(shellQuote).join(' ');
}

/** One sandbox's resource usage (`GET /sandbox/{id}/stats`). */
export interface SandboxUsage {
  sandboxId: string;
  status: SandboxStatus;
  /** When it was read. */
  at: string;
  /** CPU time used since start, and the sandbox's `cpu_cores`. */
  cpu: { usageSeconds: number; limitCores: number };
  memory: { usedBytes: number; limitBytes: number };
  pids: number;
  /** `usedBytes` of its root filesystem; null when it could not be read (PAUSED, no `df`). */
  disk: { usedBytes: number | null; limitBytes: number };
  /** Counters of its interfaces but loopback; null when they could not be read. */
  network: SandboxNetworkUsage | null;
}

/**
 * The sandbox control plane: create, read, list, update and end sandboxes, scoped to the
 * caller. A sandbox is visible to its owner and to admins of its team; to anyone else it
 * does not exist (404, never 403). Server admins (`is_admin`) may also end (DELETE) any
 * sandbox by id, but read, list and use only the sandboxes visible to them as users.
 */
export class SandboxService {
  constructor(
    private readonly store: Store,
    private readonly lifecycle: SandboxLifecycle,
    private readonly tokens: GatewayTokens,
    private readonly config: CorralConfig,
    private readonly registryCredentials: RegistryCredentialsService,
    private readonly quotas: QuotaService = new QuotaService(store, config),
    /** Refuses a built image (`corral.local/…`) the caller may not use; absent: no built images. */
    private readonly images?: Pick<ImageService, 'checkUse'>,
  ) {}

  /** Whether the caller may see and act on a sandbox. */
  canAccess(caller: Principal, sandbox: SandboxRecord): boolean {
    return maySeeSandbox(caller.user.id, caller.teams, sandbox);
  }

  /**
   * Creates a sandbox (or returns the one created earlier with the same idempotency key), within
   * the caller's and the team's quotas (403 QUOTA_EXCEEDED otherwise).
   */
  async create(caller: Principal, request: CreateSandboxInput): Promise<SandboxRecord> {
    const input = await this.resolveSource(caller, request);
    this.checkCreate(caller, input);
    const network = resolveCreateEgress(input);
    const runtime = this.lifecycle.runtime;
    if (runtime && network.networkAccess && !isOpenEgress(network.policy) && !enforcesEgress(runtime)) throw egressUnsupported(runtime.name, network.field);
    checkEgressEntriesSupported(runtime, network.policy, { allowlist: 'network_allowlist', denylist: 'network_denylist' });
    await this.checkDisk(input.diskSizeGb);
    await this.lifecycle.admission?.checkEverFits(input);
    await this.images?.checkUse(caller, input.dockerImage);
    if (input.registryCredentialsId !== null && !(await this.registryCredentials.usable(caller, input.registryCredentialsId))) {
      throw ApiError.invalid('registry_credentials_id', `no registry credentials ${input.registryCredentialsId} that you may use`);
    }
    const now = nowIso();
    const deadline = input.admissionTimeoutSeconds === null ? null : new Date(Date.parse(now) + input.admissionTimeoutSeconds * 1000).toISOString();
    const record: SandboxRecord = {
      id: newId(),
      name: input.name,
      dockerImage: input.dockerImage,
      startCommand: startCommandString(input.startCommand),
      cpuCores: input.cpuCores,
      memoryGb: input.memoryGb,
      diskSizeGb: input.diskSizeGb,
      gpuCount: input.gpuCount,
      gpuType: input.gpuType,
      vm: input.vm,
      networkAccess: network.networkAccess,
      networkAllowlist: network.policy.allowlist,
      networkDenylist: network.policy.denylist,
      egressGeneration: 1,
      egressAppliedGeneration: 0,
      status: 'PENDING',
      timeoutMinutes: input.timeoutMinutes,
      idleTimeoutMinutes: input.idleTimeoutMinutes,
      terminationReason: null,
      environmentVars: input.environmentVars,
      secrets: input.secrets,
      advancedConfigs: input.advancedConfigs,
      labels: [...new Set(input.labels)],
      userId: caller.user.id,
      teamId: input.teamId,
      region: input.region,
      registryCredentialsId: input.registryCredentialsId,
      guaranteed: input.guaranteed,
      idempotencyKey: input.idempotencyKey,
      createdAt: now,
      updatedAt: now,
      startedAt: null,
      terminatedAt: null,
      lastActivityAt: null,
      exitCode: null,
      errorType: null,
      errorMessage: null,
      kubernetesJobId: null,
      pausedAt: null,
      pausedMs: 0,
      checkpointId: input.checkpointId,
      runtimeDriver: null,
      runtimeId: null,
      runtimeOwner: this.config.instanceId,
      // This replica provisions what it creates; another adopts the work if its heartbeat lapses.
      provisioner: this.config.replicaId,
      admissionDeadline: deadline,
    };
    const quota = await this.quotas.checkFor(caller, input.teamId);
    // A place in the admission queue (429 ADMISSION_QUEUE_FULL when there is none), held until it is queued.
    const releaseClaim = this.lifecycle.admission?.claim(caller.user.id);
    let inserted: { sandbox: SandboxRecord; created: boolean };
    try {
      inserted = await this.store.insertSandbox(record, quota);
      if (inserted.created) {
        this.lifecycle.events?.recordCreated(inserted.sandbox, { userId: caller.user.id, keyId: caller.apiKeyId });
        this.lifecycle.provision(inserted.sandbox);
      }
    } catch (error) {
      if (error instanceof QuotaExceededError) throw QuotaService.toApiError(error);
      throw error;
    } finally {
      releaseClaim?.();
    }
    return this.withAdmissionReason(inserted.sandbox);
  }

  /**
   * The image, disk size and registry credentials a create starts from: what it asked for, or
   * the checkpoint's when it restores one (`restorableCheckpoint`: 404 / 409 for one it may not
   * restore; 422 for a `docker_image` or `disk_size_gb` other than the checkpoint's).
   */
  private async resolveSource(caller: Principal, input: CreateSandboxInput): Promise<ResolvedCreate> {
    if (input.checkpointId === null) {
      if (input.dockerImage === null) throw ApiError.invalid('docker_image', 'required unless checkpoint_id is given');
      return { ...input, dockerImage: input.dockerImage, diskSizeGb: input.diskSizeGb ?? DEFAULT_DISK_SIZE_GB };
    }
    const checkpoint = await restorableCheckpoint(this.store, this.lifecycle.runtime, this.config.instanceId, caller, input.checkpointId);
    if (input.dockerImage !== null && input.dockerImage !== checkpoint.dockerImage) {
      throw ApiError.invalid('docker_image', `omit it when restoring a checkpoint: checkpoint ${checkpoint.id} runs ${checkpoint.dockerImage}`);
    }
    if (input.diskSizeGb !== null && input.diskSizeGb !== checkpoint.diskSizeGb) {
      throw ApiError.invalid('disk_size_gb', `omit it when restoring a checkpoint: checkpoint ${checkpoint.id} has a ${checkpoint.diskSizeGb} GB disk`);
    }
    let registryCredentialsId = input.registryCredentialsId;
    if (registryCredentialsId === null && checkpoint.registryCredentialsId !== null && (await this.registryCredentials.usable(caller, checkpoint.registryCredentialsId))) {
      registryCredentialsId = checkpoint.registryCredentialsId;
    }
    return { ...input, dockerImage: checkpoint.dockerImage, diskSizeGb: checkpoint.diskSizeGb, registryCredentialsId };
  }

  /**
   * The row as the API shows it: a PENDING sandbox waiting in this process's admission queue has
   * why it waits (and its place in the queue) as its `errorMessage`.
   */
  private withAdmissionReason(sandbox: SandboxRecord): SandboxRecord {
    if (sandbox.status !== 'PENDING') return sandbox;
    const reason = this.lifecycle.admissionReason(sandbox.id);
    return reason === undefined ? sandbox : { ...sandbox, errorMessage: reason };
  }

  private checkCreate(caller: Principal, input: ResolvedCreate): void {
    if (input.teamId !== null && !caller.teams.has(input.teamId)) {
      throw ApiError.invalid('team_id', `you are not a member of team ${input.teamId}`);
    }
    if (input.gpuCount > 0 && input.gpuType === null) {
      throw ApiError.invalid('gpu_type', 'required when gpu_count > 0');
    }
    if (input.gpuCount > 0) {
      const available = this.lifecycle.runtime?.capabilities().gpuCount ?? 0;
      if (input.gpuCount > available) {
        throw new ApiError('UNSUPPORTED_RESOURCE', `gpu_count: this host has ${available} GPU(s); ask for at most ${available}`, {
          fieldErrors: [{ param: 'gpu_count', details: `this host has ${available} GPU(s)` }],
        });
      }
    }
    if (input.timeoutMinutes === 0) throw ApiError.invalid('timeout_minutes', 'must be from 1 to 1440, or -1 for no limit');
    if (input.idleTimeoutMinutes !== null && input.timeoutMinutes > 0 && input.idleTimeoutMinutes > input.timeoutMinutes) {
      throw ApiError.invalid('idle_timeout_minutes', 'must not exceed timeout_minutes');
    }
    if (input.advancedConfigs !== null) checkJsonBounds('advanced_configs', input.advancedConfigs);
    const secretNames = Object.keys(input.secrets ?? {});
    const clash = secretNames.find((name) => input.environmentVars !== null && Object.hasOwn(input.environmentVars, name));
    if (clash) throw ApiError.invalid(`secrets.${clash}`, 'is also set in environment_vars; pick one');
  }

  /**
   * Refuses (422 `UNSUPPORTED_RESOURCE` naming `disk_size_gb`) a disk the host cannot hold under
   * the disk policy (runtime/disk-admission.ts). The driver checks again when it makes the disk,
   * where concurrent creates are counted exactly.
   */
  private async checkDisk(diskSizeGb: number): Promise<void> {
    const capacity = await this.lifecycle.runtime?.diskCapacity();
    if (!capacity) return;
    const shortfall = diskShortfall(capacity, Math.round(diskSizeGb * 1024 ** 3), diskPolicyOf(this.config));
    if (shortfall) {
      throw new ApiError('UNSUPPORTED_RESOURCE', `disk_size_gb: ${shortfall}`, { fieldErrors: [{ param: 'disk_size_gb', details: shortfall }] });
    }
  }

  /** A sandbox the caller may see, or 404. */
  async get(caller: Principal, id: string): Promise<SandboxRecord> {
    const sandbox = await this.store.getSandbox(id);
    if (!sandbox || !this.canAccess(caller, sandbox)) throw ApiError.sandboxNotFound(id);
    return this.withAdmissionReason(sandbox);
  }

  /** Resolves the user and team scope of a listing or bulk operation, enforcing who may see what. */
  private scope(caller: Principal, teamId: string | null | undefined, userId: string | null | undefined, allUsers = false): SandboxFilter {
    const filter: SandboxFilter = {};
    if (teamId) {
      if (!caller.teams.has(teamId)) throw new ApiError('FORBIDDEN', `You are not a member of team ${teamId}`);
      filter.teamId = teamId;
    }
    const otherUser = (userId && userId !== caller.user.id) || allUsers;
    if (otherUser) {
      if (!teamId || caller.teams.get(teamId) !== 'admin') {
        throw new ApiError('FORBIDDEN', "Acting on other users' sandboxes needs team_id of a team you administer");
      }
      if (!allUsers && userId) filter.userId = userId;
    } else {
      filter.userId = caller.user.id;
    }
    return filter;
  }

  async list(caller: Principal, input: ListSandboxesInput): Promise<{ sandboxes: SandboxRecord[]; total: number }> {
    const filter = this.scope(caller, input.teamId, input.userId);
    if (input.status) filter.status = input.status;
    if (input.isActive) filter.activeOnly = true;
    if (input.labels && input.labels.length > 0) filter.labels = input.labels;
    const { sandboxes, total } = await this.store.listSandboxes(filter, input.page, input.perPage);
    return { sandboxes: sandboxes.map((s) => this.withAdmissionReason(s)), total };
  }

  /** Changes the lifetime, idle timeout or labels of a sandbox. */
  async update(
    caller: Principal,
    id: string,
    patch: { timeoutMinutes?: number; idleTimeoutMinutes?: number | null; labels?: string[] },
  ): Promise<SandboxRecord> {
    const sandbox = await this.get(caller, id);
    if (patch.timeoutMinutes === 0) throw ApiError.invalid('timeout_minutes', 'must be from 1 to 1440, or -1 for no limit');
    const timeout = patch.timeoutMinutes ?? sandbox.timeoutMinutes;
    const idle = patch.idleTimeoutMinutes === undefined ? sandbox.idleTimeoutMinutes : patch.idleTimeoutMinutes;
    if (idle !== null && timeout > 0 && idle > timeout) {
      throw ApiError.invalid('idle_timeout_minutes', 'must not exceed timeout_minutes');
    }
    if (isTerminal(sandbox.status) && (patch.timeoutMinutes !== undefined || patch.idleTimeoutMinutes !== undefined)) {
      throw new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${id} has ended (${sandbox.status}); its timeouts can no longer change`);
    }
    const updated = await this.store.updateSandbox(id, {
      ...(patch.timeoutMinutes !== undefined ? { timeoutMinutes: patch.timeoutMinutes } : {}),
      ...(patch.idleTimeoutMinutes !== undefined ? { idleTimeoutMinutes: patch.idleTimeoutMinutes } : {}),
      ...(patch.labels !== undefined ? { labels: [...new Set(patch.labels)] } : {}),
    });
    if (!updated) throw ApiError.sandboxNotFound(id);
    return updated;
  }

  /**
   * Pauses a RUNNING sandbox the caller may see (Corral's extension): every process frozen, its
   * memory kept, its timeout and idle timers stopped. Idempotent. 409 `SANDBOX_NOT_RUNNING` in
   * any status but RUNNING/PAUSED; 409 `PAUSE_UNSUPPORTED` on a driver that cannot pause.
   */
  async pause(caller: Principal, id: string): Promise<SandboxRecord> {
    await this.get(caller, id);
    return this.lifecycle.pause(id);
  }

  /** Resumes a PAUSED sandbox the caller may see where it stopped, timers with the time they had left. Idempotent. */
  async resume(caller: Principal, id: string): Promise<SandboxRecord> {
    await this.get(caller, id);
    return this.lifecycle.resume(id);
  }

  /**
   * Ends a sandbox the caller may see, or any sandbox for a server admin. Deleting one that
   * already ended succeeds and changes nothing.
   */
  async delete(caller: Principal, id: string): Promise<{ alreadyEnded: boolean }> {
    const sandbox = caller.user.isAdmin ? await this.store.getSandbox(id) : await this.get(caller, id);
    if (!sandbox) throw ApiError.sandboxNotFound(id);
    const ended = await this.lifecycle.terminate(sandbox, { status: 'TERMINATED', terminationReason: 'deleted' });
    return { alreadyEnded: ended === undefined };
  }

  async bulkDelete(caller: Principal, input: BulkDeleteInput): Promise<{ succeeded: string[]; failed: Array<{ sandbox_id: string; error: string }> }> {
    if (!input.sandboxIds && !input.labels) {
      throw ApiError.invalid('sandbox_ids', 'give sandbox_ids or labels (or both)');
    }
    const filter = this.scope(caller, input.teamId, input.userId, input.allUsers);
    const succeeded: string[] = [];
    const failed: Array<{ sandbox_id: string; error: string }> = [];
    let targets: SandboxRecord[];
    if (input.sandboxIds) {
      const ids = [...new Set(input.sandboxIds)];
      const found = new Map((await this.store.getSandboxes(ids)).map((s) => [s.id, s]));
      targets = [];
      for (const id of ids) {
        const sandbox = found.get(id);
        const inScope =
          sandbox !== undefined &&
          this.canAccess(caller, sandbox) &&
          (filter.userId === undefined || sandbox.userId === filter.userId) &&
          (filter.teamId === undefined || sandbox.teamId === filter.teamId) &&
          (!input.labels || input.labels.every((label) => sandbox.labels.includes(label)));
        if (inScope) targets.push(sandbox);
        else failed.push({ sandbox_id: id, error: 'Sandbox not found' });
      }
    } else {
      // Live sandboxes, and ended ones that still hold a container (kept for their logs).
      filter.labels = input.labels ?? [];
      targets = (await this.store.findSandboxes(filter, BULK_DELETE_LABEL_LIMIT)).filter(
        (s) => this.canAccess(caller, s) && (!isTerminal(s.status) || s.runtimeId !== null),
      );
    }
    await Promise.all(
      targets.map(async (sandbox) => {
        try {
          await this.lifecycle.terminate(sandbox, { status: 'TERMINATED', terminationReason: 'deleted' });
          succeeded.push(sandbox.id);
        } catch (error) {
          failed.push({ sandbox_id: sandbox.id, error: error instanceof Error ? error.message : String(error) });
        }
      }),
    );
    return { succeeded, failed };
  }

  /** Statuses of up to 100 sandboxes, in request order, with a per-id error for the ones the caller can't see. */
  async batchStatus(caller: Principal, ids: string[]): Promise<{
    statuses: SandboxRecord[];
    missing: string[];
  }> {
    const unique = new Set(ids);
    if (unique.size !== ids.length) throw ApiError.invalid('sandbox_ids', 'must not repeat an id');
    const found = new Map((await this.store.getSandboxes(ids)).map((s) => [s.id, s]));
    const statuses: SandboxRecord[] = [];
    const missing: string[] = [];
    for (const id of ids) {
      const sandbox = found.get(id);
      if (sandbox && this.canAccess(caller, sandbox)) statuses.push(this.withAdmissionReason(sandbox));
      else missing.push(id);
    }
    return { statuses, missing };
  }

  /** This deployment's active sandboxes by status and driver (`corral_sandboxes`). */
  countActive(): Promise<Array<{ status: string; driver: string; count: number }>> {
    return this.store.countActiveSandboxes(this.config.instanceId);
  }

  /**
   * Resource usage of a RUNNING or PAUSED sandbox the caller may see: CPU, memory and pids from
   * the driver; disk and network read from inside it (`readInsideUsage`; null while it is PAUSED,
   * or when they cannot be read). 409 `SANDBOX_NOT_RUNNING` for any other status.
   */
  async stats(caller: Principal, id: string): Promise<SandboxUsage> {
    const sandbox = await this.get(caller, id);
    const runtime = this.lifecycle.runtime;
    const runtimeId = sandbox.runtimeId;
    if (!runtime || !runtimeId || (sandbox.status !== 'RUNNING' && sandbox.status !== 'PAUSED')) {
      throw new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${id} is ${sandbox.status}; stats are read from a RUNNING or PAUSED sandbox`);
    }
    let usage: RuntimeStats;
    try {
      usage = await runtime.stats(runtimeId);
    } catch (error) {
      if (error instanceof RuntimeError && error.kind === 'NOT_FOUND') throw new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${id} is no longer running`);
      throw error;
    }
    const inside = sandbox.status === 'RUNNING' ? await readInsideUsage(runtime, runtimeId) : { diskUsedBytes: null, network: null };
    return {
      sandboxId: sandbox.id,
      status: sandbox.status,
      at: new Date().toISOString(),
      cpu: { usageSeconds: usage.cpuUsageNanos / 1e9, limitCores: sandbox.cpuCores },
      memory: { usedBytes: usage.memoryBytes, limitBytes: usage.memoryLimitBytes },
      pids: usage.pids,
      disk: { usedBytes: inside.diskUsedBytes, limitBytes: Math.round(sandbox.diskSizeGb * 1024 ** 3) },
      network: inside.network,
    };
  }

  /** The start command's output, bounded. Empty until the sandbox has a container. */
  async logs(caller: Principal, id: string): Promise<string> {
    const sandbox = await this.get(caller, id);
    const runtime = this.lifecycle.runtime;
    if (!runtime || !sandbox.runtimeId) return '';
    try {
      return await runtime.logs(sandbox.runtimeId, this.config.logsMaxBytes);
    } catch {
      return '';
    }
  }

  /**
   * Ends every live sandbox a (deleted) user owns, through the lifecycle; their rows stay for
   * the retention period. Returns how many it ended.
   */
  async terminateOwnedBy(userId: string): Promise<number> {
    const live = await this.store.findSandboxes({ userId, activeOnly: true }, BULK_DELETE_LABEL_LIMIT);
    const ended = await Promise.all(
      live.map((sandbox) => this.lifecycle.terminate(sandbox, { status: 'TERMINATED', terminationReason: 'owner_deleted' })),
    );
    return ended.filter((s) => s !== undefined).length;
  }

  /** The ids of a user's own sandboxes that have not ended (at most 10 000). */
  async activeIdsOf(userId: string): Promise<string[]> {
    return (await this.store.findSandboxes({ userId, activeOnly: true }, 10_000)).map((s) => s.id);
  }

  /** A gateway token for one sandbox's data plane. */
  async authorize(caller: Principal, id: string): Promise<{ token: string; expiresAt: Date; sandbox: SandboxRecord }> {
    const sandbox = await this.get(caller, id);
    const { token, expiresAt } = this.tokens.issue(sandbox.id, caller.user.id, caller.apiKeyId);
    return { token, expiresAt, sandbox };
  }
}
