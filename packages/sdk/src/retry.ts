/** How often and how long to retry one kind of failure. */
export interface RetryPolicy {
  /** Retries after the first attempt (0 = never retry). */
  maxRetries: number;
  /** First delay; doubles each retry. */
  baseDelayMs: number;
  /** Longest single delay, including a server's `Retry-After`. */
  maxDelayMs: number;
}

/** Exponential backoff with ±25 % jitter, at least `floorMs` (a server's `Retry-After`), capped. */
export function backoffDelay(policy: RetryPolicy, attempt: number, floorMs = 0): number {
  const exponential = policy.baseDelayMs * 2 ** attempt;
  const jittered = exponential * (0.75 + Math.random() * 0.5);
  return Math.min(policy.maxDelayMs, Math.max(floorMs + Math.random() * 250 * (floorMs > 0 ? 1 : 0), jittered));
}

/** Resolves after `ms`, or rejects when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `Retry-After` in seconds (delta form or HTTP date), when present. */
export function retryAfterSeconds(header: string | null): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, (date - Date.now()) / 1000);
}
