import { CorralError, NotFoundError } from './errors.js';
import type { SandboxesApi } from './resources/sandboxes-api.js';

/** One sandbox's lifecycle state as the batch status endpoint reports it. */
export interface SandboxStatusEntry {
  sandboxId: string;
  status: string;
  errorType: string | null;
  errorMessage: string | null;
}

interface Waiter {
  resolve(entry: SandboxStatusEntry): void;
  reject(error: unknown): void;
}

/** Most ids `status:batchGet` takes per call. */
export const MAX_BATCH_IDS = 100;

/**
 * Coalesces status reads: every `get(id)` within one window (25 ms by default) goes out as one
 * `POST /sandbox/status:batchGet` per 100 ids. When the server answers the batch route with 404
 * or 405 (an older server), the client remembers it and reads `GET /sandbox/{id}` per id.
 * One coalescer per client, so many `waitUntilRunning()` calls share requests.
 */
export class StatusCoalescer {
  private pending = new Map<string, Waiter[]>();
  private timer: NodeJS.Timeout | undefined;
  /** True once the server has shown it has no batch route. */
  batchUnsupported = false;

  constructor(
    private readonly api: SandboxesApi,
    private readonly windowMs: number,
  ) {}

  /** The sandbox's current status, read in the next batch. Rejects with {@link NotFoundError} for an unknown id. */
  get(id: string): Promise<SandboxStatusEntry> {
    return new Promise((resolve, reject) => {
      const waiters = this.pending.get(id);
      if (waiters) waiters.push({ resolve, reject });
      else this.pending.set(id, [{ resolve, reject }]);
      this.timer ??= setTimeout(() => void this.flush(), this.windowMs);
    });
  }

  private async flush(): Promise<void> {
    this.timer = undefined;
    const batch = this.pending;
    this.pending = new Map();
    const ids = [...batch.keys()];
    const chunks: string[][] = [];
    for (let i = 0; i < ids.length; i += MAX_BATCH_IDS) chunks.push(ids.slice(i, i + MAX_BATCH_IDS));
    await Promise.all(chunks.map((chunk) => this.resolveChunk(chunk, batch)));
  }

  private settle(batch: Map<string, Waiter[]>, id: string, outcome: { entry: SandboxStatusEntry } | { error: unknown }): void {
    for (const waiter of batch.get(id) ?? []) {
      if ('entry' in outcome) waiter.resolve(outcome.entry);
      else waiter.reject(outcome.error);
    }
  }

  private async resolveChunk(ids: string[], batch: Map<string, Waiter[]>): Promise<void> {
    if (!this.batchUnsupported) {
      try {
        const answer = await this.api.batchStatus(ids);
        const seen = new Set<string>();
        for (const s of answer.statuses) {
          seen.add(s.sandbox_id);
          this.settle(batch, s.sandbox_id, {
            entry: { sandboxId: s.sandbox_id, status: s.status, errorType: s.error_type, errorMessage: s.error_message },
          });
        }
        for (const e of answer.errors) {
          seen.add(e.sandbox_id);
          const error =
            e.code === 'NOT_FOUND'
              ? new NotFoundError(`${e.message}. Check the id and that your key belongs to its owner.`, { status: 404, code: 'SANDBOX_NOT_FOUND' })
              : new CorralError(`${e.message} (${e.code})`, { code: e.code });
          this.settle(batch, e.sandbox_id, { error });
        }
        for (const id of ids) if (!seen.has(id)) this.settle(batch, id, { error: new CorralError(`status:batchGet did not report sandbox ${id}`) });
        return;
      } catch (error) {
        if (error instanceof CorralError && (error.status === 405 || (error.status === 404 && error.code !== 'SANDBOX_NOT_FOUND'))) {
          this.batchUnsupported = true;
        } else {
          for (const id of ids) this.settle(batch, id, { error });
          return;
        }
      }
    }
    await Promise.all(
      ids.map(async (id) => {
        try {
          const s = await this.api.get(id);
          this.settle(batch, id, { entry: { sandboxId: s.id, status: s.status, errorType: s.errorType, errorMessage: s.errorMessage } });
        } catch (error) {
          this.settle(batch, id, { error });
        }
      }),
    );
  }
}
