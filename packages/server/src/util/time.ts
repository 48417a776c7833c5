/** The current time as an ISO-8601 UTC string, the format every stored time uses. */
export function nowIso(): string {
  return new Date().toISOString();
}

/** Milliseconds since the epoch for a stored time. */
export function toMillis(iso: string): number {
  return Date.parse(iso);
}

/** `promise`'s value, or `fallback` when it takes longer than `ms` (the promise is left to settle on its own). */
export async function orAfter<T, F>(promise: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
