/** A change that takes access away from someone. */
export type AccessChange =
  | { kind: 'keyRevoked'; keyId: string; userId: string }
  | { kind: 'userDeleted'; userId: string }
  | { kind: 'membershipChanged'; teamId: string; userId: string }
  | { kind: 'teamDeleted'; teamId: string };

/** A subscriber; it may be async and is awaited before the API call that caused the change answers. */
export type AccessListener = (change: AccessChange) => void | Promise<void>;

/**
 * Tells the parts of the server that hold access on their own (token checks, SSH connections,
 * tunnel links, live sandboxes) that access was taken away, so they act at once instead of on
 * their next periodic re-check. Listener failures are reported to `onError` and never fail the change.
 */
export class AccessEvents {
  private readonly listeners = new Set<AccessListener>();

  constructor(private readonly onError: (error: unknown, change: AccessChange) => void = () => undefined) {}

  /** Adds a listener; returns a function that removes it. */
  subscribe(listener: AccessListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Runs every listener and waits for all of them. */
  async emit(change: AccessChange): Promise<void> {
    const results = await Promise.allSettled([...this.listeners].map(async (listener) => listener(change)));
    for (const result of results) if (result.status === 'rejected') this.onError(result.reason, change);
  }
}
