import type { Store } from '../store/store.js';
import type { SandboxRecord, SandboxStatus } from './sandbox-model.js';

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
 * Holds the answer of `POST /sandbox` while its sandbox provisions, so a client's first status
 * ask already sees it RUNNING. It waits on the store's in-process update notifications (no
 * polling) and answers with the row as it then is: when it leaves PENDING/PROVISIONING (RUNNING,
 * ERROR, or TERMINATED after a delete), when the bound passes, or when the client goes away.
 * Provisioning itself never depends on the hold.
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
  async settle(sandbox: SandboxRecord, options: { requestedMs?: number; signal?: AbortSignal } = {}): Promise<SandboxRecord> {
    const bound = Math.min(this.boundMs, options.requestedMs ?? this.boundMs);
    if (bound <= 0 || !STARTING.includes(sandbox.status) || options.signal?.aborted) return sandbox;
    let stop = (): void => {};
    const settled = new Promise<SandboxRecord | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), bound);
      const onAbort = (): void => resolve(undefined);
      const unsubscribe = this.store.onSandboxUpdated((row) => {
        if (row.id === sandbox.id && !STARTING.includes(row.status)) resolve(row);
      });
      options.signal?.addEventListener('abort', onAbort, { once: true });
      stop = () => {
        clearTimeout(timer);
        unsubscribe();
        options.signal?.removeEventListener('abort', onAbort);
      };
    });
    try {
      // Subscribed first, then re-read: a change between the insert and the subscription is not missed.
      const current = await this.store.getSandbox(sandbox.id);
      if (!current || !STARTING.includes(current.status) || !this.provisioning.isProvisioning(sandbox.id)) return current ?? sandbox;
      return (await settled) ?? (await this.store.getSandbox(sandbox.id)) ?? current;
    } finally {
      stop();
    }
  }
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
