/** The current time as an ISO-8601 UTC string, the format every stored time uses. */
export function nowIso(): string {
  return new Date().toISOString();
}

/** Milliseconds since the epoch for a stored time. */
export function toMillis(iso: string): number {
  return Date.parse(iso);
}
