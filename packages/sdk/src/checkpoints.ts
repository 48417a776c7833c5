import type { CorralClient } from './client.js';
import { CheckpointFailedError, TimeoutError } from './errors.js';
import type { GetCheckpointResponse } from './generated/api.js';
import { sleep } from './retry.js';

/** A checkpoint as the server describes it (Prime's `SandboxCheckpoint`, snake_case). */
export type CheckpointInfo = GetCheckpointResponse;

/** Options of {@link waitForCheckpoint}. */
export interface WaitForCheckpointOptions {
  /** Total budget, ms. Default 300 000 (Prime's `wait_for_checkpoint` default, 300 s). */
  timeoutMs?: number;
  /** First delay between reads, ms; grows ×1.5 up to `maxPollIntervalMs`. Default 250. */
  pollIntervalMs?: number;
  /** Longest delay between reads, ms. Default 1500. */
  maxPollIntervalMs?: number;
  signal?: AbortSignal;
}

/**
 * Reads a checkpoint until it is DURABLE and returns it (Prime's `wait_for_checkpoint`). Throws
 * {@link CheckpointFailedError} at once when it is FAILED or DELETING, {@link TimeoutError} when
 * the budget runs out, and the API's own errors (`NotFoundError`) as they come.
 */
export async function waitForCheckpoint(client: CorralClient, checkpointId: string, options: WaitForCheckpointOptions = {}): Promise<CheckpointInfo> {
  const timeoutMs = options.timeoutMs ?? 300_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError(`timeoutMs must be a positive finite number of milliseconds, not ${timeoutMs}`);
  const deadline = Date.now() + timeoutMs;
  let delay = options.pollIntervalMs ?? 250;
  const maxDelay = options.maxPollIntervalMs ?? 1500;
  for (;;) {
    options.signal?.throwIfAborted();
    const checkpoint = await client.sandboxes.getCheckpoint(checkpointId);
    if (checkpoint.state === 'DURABLE') return checkpoint;
    if (checkpoint.state === 'FAILED' || checkpoint.state === 'DELETING') throw new CheckpointFailedError(checkpointId, checkpoint.state, checkpoint.error);
    const left = deadline - Date.now();
    if (left <= 0) {
      throw new TimeoutError(`Checkpoint ${checkpointId} is still ${checkpoint.state} after ${Math.round(timeoutMs / 1000)}s; wait longer (timeoutMs) or check the server's log.`);
    }
    await sleep(Math.min(delay, left), options.signal);
    delay = Math.min(maxDelay, delay * 1.5);
  }
}
