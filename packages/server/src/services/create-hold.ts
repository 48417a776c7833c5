import type { Store } from '../store/store.js';
import type { SandboxRecord, SandboxStatus } from '../records/sandbox-records.js';

/** Statuses a sandbox passes through while it starts; a held create answers once it has left them. */
const STARTING: readonly SandboxStatus[] = ['PENDING', 'PROVISIONING'];

/** The header a client sends to shorten (or, with 0, skip) the held create. */
export const CREATE_WAIT_HEADER = 'x-corral-create-wait';

/** What the hold needs to know about provisioning. */
export interface ProvisioningView {
  /**
   * Whether this process is provisioning the sandbox right now, or has it waiting for one of its
   * provisioning slots (a short throughput queue, worth holding for); not another replica's.
   */
  isProvisioning(id: string): boolean;
}

/**
 * Holds the answer of `POST /sandbox` (and of `status:batchGet`) while sandboxes provision, so a
 * client's first status ask already sees them RUNNING. It waits on the store's in-process update
 * notifications (no polling) and answers when the sandboxes have left PENDING/PROVISIONING
 * (RUNNING, ERROR, or TERMINATED after a delete), when the bound passes, or when the client goes
 * away. Only sandboxes this process is provisioning are waited for. Provisioning itself never
 * depends on the hold.
 */
export class CreateHold {
  constructor(
    private readonly store: Store,
    private readonly provisioning: ProvisioningView,
    /** The longest hold, ms; 0 answers at once. */
    readonly boundMs: number,
  ) {}

  /**
   * The sandbox once it has left PENDING/PROVISIONING, or as it is after `min(boundMs,
   * requestedMs)` or when `signal` aborts. Answers at once when this process is not provisioning
   * it (no runtime, queued, or already settled).
   */
  async settle(sandbox: SandboxRecord, options: HoldOptions = {}): Promise<SandboxRecord> {
    if (!STARTING.includes(sandbox.status)) return sandbox;
    if (!(await this.settleAll([sandbox.id], options))) return sandbox;
    return (await this.store.getSandbox(sandbox.id)) ?? sandbox;
  }

  /**
   * Waits until none of `ids` that this process is provisioning is PENDING/PROVISIONING, for at
   * most `min(boundMs, requestedMs)` or until `signal` aborts. Resolves false when it did not wait
   * at all (bound 0, aborted, nothing of ours starting), true otherwise; the caller reads the rows
   * afterwards.
   */
  async settleAll(ids: readonly string[], options: HoldOptions = {}): Promise<boolean> {
    const bound = Math.min(this.boundMs, options.requestedMs ?? this.boundMs);
    if (bound <= 0 || ids.length === 0 || options.signal?.aborted) return false;
    const pending = new Set(ids.filter((id) => this.provisioning.isProvisioning(id)));
    if (pending.size === 0) return false;
    let stop = (): void => {};
    const settled = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, bound);
      const onAbort = (): void => resolve();
      const unsubscribe = this.store.onSandboxUpdated((row) => {
        if (pending.has(row.id) && !STARTING.includes(row.status)) pending.delete(row.id);
        if (pending.size === 0) resolve();
      });
      options.signal?.addEventListener('abort', onAbort, { once: true });
      stop = () => {
        clearTimeout(timer);
        unsubscribe();
        options.signal?.removeEventListener('abort', onAbort);
      };
    });
    try {
      // Subscribed first, then re-read: a change between the caller's read and the subscription is not missed.
      const rows = await Promise.all([...pending].map((id) => this.store.getSandbox(id)));
      for (const row of rows) if (row && !STARTING.includes(row.status)) pending.delete(row.id);
      for (const id of [...pending]) if (!rows.some((row) => row?.id === id)) pending.delete(id);
      if (pending.size === 0) return true;
      await settled;
      return true;
    } finally {
      stop();
    }
  }
}

/** How a caller bounds one hold. */
export interface HoldOptions {
  /** A shorter bound than the server's, ms (from `X-Corral-Create-Wait`). */
  requestedMs?: number;
  /** Ends the hold early: the client went away. */
  signal?: AbortSignal;
}

/**
 * The hold a request asks for with `X-Corral-Create-Wait: <ms>` (0 = answer at once), or
 * undefined when it sends none. Returns an error message for a value that is not a whole number
 * of milliseconds.
 */
export function requestedCreateWait(header: string | string[] | undefined): { ms?: number; error?: string } {
  if (header === undefined) return {};
  const raw = Array.isArray(header) ? header[header.length - 1] ?? '' : header;
  if (!/^\s*\d{1,9}\s*$/.test(raw)) return { error: `must be a whole number of milliseconds (0 answers at once), got "${raw}"` };
  return { ms: Number(raw) };
}
