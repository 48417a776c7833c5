import type { AccessChecker } from '../services/access-checker.js';
import type { Store } from '../store/store.js';

/** The access a gateway request or session was opened with: the API key behind its token, and its caller. */
export interface GatewayGrant {
  keyId: string;
  callerId: string;
  sandboxId: string;
}

interface LiveEntry {
  grant: GatewayGrant;
  cut: () => void;
}

/**
 * The gateway's open requests and sessions (REST calls in flight, streaming-exec WebSockets,
 * Connect calls) with the access each was opened with. {@link recheck} cuts every one whose key
 * was revoked, whose user was deleted, or whose caller may no longer see the sandbox: taking
 * access away ends what is already open, not only what comes next.
 */
export class LiveGrants {
  private readonly entries = new Set<LiveEntry>();
  private checking: Promise<void> | null = null;
  private again = false;

  constructor(
    private readonly store: Store,
    private readonly access: AccessChecker,
  ) {}

  /** Open requests and sessions right now. */
  get size(): number {
    return this.entries.size;
  }

  /** Tracks an open request or session; `cut` ends it. Returns the function that stops tracking it. */
  track(grant: GatewayGrant, cut: () => void): () => void {
    const entry: LiveEntry = { grant, cut };
    this.entries.add(entry);
    return () => this.entries.delete(entry);
  }

  /**
   * Checks every tracked grant against the store and cuts those that no longer hold. Calls made
   * while a check runs are folded into one more check after it.
   */
  recheck(): Promise<void> {
    if (this.checking) {
      this.again = true;
      return this.checking;
    }
    this.checking = (async () => {
      do {
        this.again = false;
        await this.checkAll();
      } while (this.again);
    })().finally(() => (this.checking = null));
    return this.checking;
  }

  private async checkAll(): Promise<void> {
    const sandboxes = new Map<string, Awaited<ReturnType<Store['getSandbox']>>>();
    for (const entry of [...this.entries]) {
      const { keyId, callerId, sandboxId } = entry.grant;
      if (!sandboxes.has(sandboxId)) sandboxes.set(sandboxId, await this.store.getSandbox(sandboxId));
      const sandbox = sandboxes.get(sandboxId);
      if (sandbox && (await this.access.maySee(keyId, sandbox, callerId))) continue;
      this.entries.delete(entry);
      entry.cut();
    }
  }
}
