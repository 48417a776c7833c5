import { ApiError } from '../errors/api-error.js';
import type { CheckpointRecord } from '../records/checkpoint-records.js';
import type { SandboxRecord } from '../records/sandbox-records.js';
import type { Principal } from './auth-service.js';
import type { CheckpointService } from './checkpoint-service.js';
import type { CreateSandboxInput, SandboxService } from './sandbox-service.js';

/** A fork's create fields: a create without the checkpoint (the fork names it). */
export type ForkInput = Omit<CreateSandboxInput, 'checkpointId'>;

/**
 * Forks (`docs/checkpoints.md`): `count` sandboxes restored from one DURABLE checkpoint, each a
 * normal create (visibility, quotas, admission); or a checkpoint of a running sandbox first, then
 * its forks. All or nothing: when one create is refused, the forks already made are deleted.
 */
export class ForkService {
  constructor(
    private readonly sandboxes: SandboxService,
    private readonly checkpoints: CheckpointService,
  ) {}

  /**
   * Creates `count` sandboxes from checkpoint `checkpointId`. An idempotency key `k` becomes
   * `k-0`, `k-1`, … (a retry returns the same forks).
   */
  async forkCheckpoint(caller: Principal, checkpointId: string, count: number, input: ForkInput): Promise<SandboxRecord[]> {
    const created: SandboxRecord[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const idempotencyKey = input.idempotencyKey === null ? null : `${input.idempotencyKey}-${i}`;
        created.push(await this.sandboxes.create(caller, { ...input, checkpointId, idempotencyKey }));
      }
    } catch (error) {
      for (const sandbox of created) await this.sandboxes.delete(caller, sandbox.id).catch(() => undefined);
      throw error;
    }
    return created;
  }

  /**
   * Checkpoints a RUNNING or PAUSED sandbox, waits until the checkpoint is DURABLE, then creates
   * `count` forks of it with the source's settings (resources, start command, environment,
   * egress, timeouts, labels, team). 409 `CHECKPOINT_CAPTURE_FAILED` when the capture failed.
   */
  async forkSandbox(caller: Principal, sandboxId: string, count: number, memory: boolean): Promise<{ checkpoint: CheckpointRecord; sandboxes: SandboxRecord[] }> {
    const source = await this.sandboxes.get(caller, sandboxId);
    const started = await this.checkpoints.checkpoint(caller, sandboxId, { memory });
    const checkpoint = await this.checkpoints.settled(started.id);
    if (checkpoint?.state !== 'DURABLE') {
      throw new ApiError('CHECKPOINT_CAPTURE_FAILED', `Checkpoint ${started.id} of sandbox ${sandboxId} is ${checkpoint?.state ?? 'gone'}: ${checkpoint?.error ?? 'it was deleted'}; nothing was forked`);
    }
    const sandboxes = await this.forkCheckpoint(caller, checkpoint.id, count, forkInputOf(source));
    return { checkpoint, sandboxes };
  }
}

/** The create fields of a fork of `source`: its own settings, its image and disk from the checkpoint. */
function forkInputOf(source: SandboxRecord): ForkInput {
  return {
    name: source.name,
    dockerImage: null,
    startCommand: source.startCommand,
    cpuCores: source.cpuCores,
    memoryGb: source.memoryGb,
    diskSizeGb: null,
    gpuCount: source.gpuCount,
    gpuType: source.gpuType,
    vm: source.vm,
    networkAccess: null,
    networkAllowlist: source.networkAllowlist,
    networkDenylist: source.networkDenylist,
    timeoutMinutes: source.timeoutMinutes,
    idleTimeoutMinutes: source.idleTimeoutMinutes,
    environmentVars: source.environmentVars,
    secrets: source.secrets,
    labels: source.labels,
    teamId: source.teamId,
    region: source.region,
    advancedConfigs: source.advancedConfigs,
    registryCredentialsId: null,
    guaranteed: source.guaranteed,
    idempotencyKey: null,
    admissionTimeoutSeconds: null,
  };
}
