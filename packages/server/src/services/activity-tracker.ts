import type { Logger } from 'pino';
import type { Store } from '../store/store.js';

/**
 * Records gateway activity (exec, upload, download, read-file) for the idle timeout. Writes are
 * batched: each sandbox's `lastActivityAt` is flushed to the store at most once per interval,
 * so a busy sandbox costs one UPDATE per second, not one per request.
 */
export class ActivityTracker {
  private readonly pending = new Set<string>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly flushIntervalMs = 1000,
  ) {}

  /** Notes activity on a sandbox now. */
  touch(sandboxId: string): void {
    this.pending.add(sandboxId);
    if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.flushIntervalMs);
      this.timer.unref();
    }
  }

  /** Writes pending activity to the store. */
  async flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.size === 0) return;
    const ids = [...this.pending];
    this.pending.clear();
    try {
      await this.store.touchSandboxes(ids, new Date().toISOString());
    } catch (error) {
      this.log.warn({ err: error }, 'could not record sandbox activity');
    }
  }
}
