import { type CheckpointRequest, type RuntimeCapabilities, RuntimeError, type RuntimeCheckpoint } from '../runtime/runtime.js';
import { PausableRuntime } from './pausable-runtime.js';

/** One `checkpoint()` call as the test runtime saw it. */
export interface CheckpointCall {
  runtimeId: string;
  request: Omit<CheckpointRequest, 'onFrozen'>;
}

/**
 * The pausable test runtime with filesystem checkpoints (`capabilities().checkpoint`, and
 * `memoryCheckpoint` when built with `{ memory: true }`). It stores nothing: a checkpoint is a ref
 * (`ckpt-<id>`) of {@link sizeBytes} bytes. Tests can hold captures ({@link holdCaptures}, then
 * {@link releaseCaptures}), make the next ones fail ({@link failCaptures}) or deletes fail
 * ({@link failDeletes}); every call is recorded ({@link checkpointCalls}, {@link deletedRefs}).
 */
export class CheckpointingRuntime extends PausableRuntime {
  readonly checkpointCalls: CheckpointCall[] = [];
  readonly deletedRefs: string[] = [];
  /** Refs stored and not deleted. */
  readonly storedRefs = new Set<string>();
  /** Bytes each checkpoint reports. */
  sizeBytes = 4096;
  /** While set, captures throw `CHECKPOINT_FAILED` with this message. */
  failCaptures: string | null = null;
  /** While true, `deleteCheckpoint` throws. */
  failDeletes = false;
  /** Captures running at once, and the most seen. */
  running = 0;
  maxRunning = 0;
  private held: Array<() => void> | null = null;
  private readonly memory: boolean;

  constructor(options: { /** Memory checkpoints too (default false). */ memory?: boolean } = {}) {
    super();
    this.memory = options.memory ?? false;
  }

  override capabilities(): RuntimeCapabilities {
    return { ...super.capabilities(), checkpoint: true, memoryCheckpoint: this.memory };
  }

  /** From now on captures freeze (`onFrozen`) and then wait until {@link releaseCaptures}. */
  holdCaptures(): void {
    this.held ??= [];
  }

  /** Lets held captures finish, and the next ones run through. */
  releaseCaptures(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const release of held) release();
  }

  async checkpoint(runtimeId: string, request: CheckpointRequest): Promise<RuntimeCheckpoint> {
    const { onFrozen, ...rest } = request;
    this.checkpointCalls.push({ runtimeId, request: rest });
    this.running += 1;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      if (!(await this.inspect(runtimeId))) throw new RuntimeError('NOT_FOUND', `no sandbox ${runtimeId}`);
      onFrozen?.();
      if (this.held) await new Promise<void>((resolve) => this.held?.push(resolve) ?? resolve());
      if (this.failCaptures !== null) throw new RuntimeError('CHECKPOINT_FAILED', this.failCaptures);
      const ref = `ckpt-${request.checkpointId}`;
      this.storedRefs.add(ref);
      return { ref, sizeBytes: this.sizeBytes, memory: request.memory };
    } finally {
      this.running -= 1;
    }
  }

  async deleteCheckpoint(ref: string): Promise<void> {
    if (this.failDeletes) throw new RuntimeError('RUNTIME_ERROR', `deleting ${ref} refused by the test`);
    this.deletedRefs.push(ref);
    this.storedRefs.delete(ref);
  }
}
