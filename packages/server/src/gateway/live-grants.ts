import type { SandboxAccess, SandboxGrant } from '../services/sandbox-access.js';

/** The access a gateway request or session was opened with: the API key behind its token, and its caller. */
export type GatewayGrant = SandboxGrant;

interface LiveEntry {
  grant: GatewayGrant;
  cut: () => void;
}

/** How often open grants are re-checked by default (access changed on another replica). */
const DEFAULT_RECHECK_MS = 5_000;

/** What LiveGrants needs. */
export interface LiveGrantsDeps {
  access: Pick<SandboxAccess, 'revokedGrants'>;
  /** Announces access taken away in this process; returns the unsubscribe function. */
  subscribe: (listener: () => Promise<void>) => () => void;
  /** Told when a timed re-check fails. */
  onError: (error: unknown) => void;
  /** How often open grants are re-checked while any are open. */
  recheckMs?: number;
}

/**
 * The gateway's open requests and sessions (REST calls in flight, streaming-exec WebSockets,
 * Connect calls) with the access each was opened with. {@link recheck} cuts every one whose key
 * was revoked, whose user was deleted, or whose caller may no longer see the sandbox: taking
 * access away ends what is already open, not only what comes next. {@link start} re-checks at once
 * on every access change announced in this process and every few seconds while grants are open.
 */
export class LiveGrants {
  private readonly entries = new Set<LiveEntry>();
  private checking: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly deps: LiveGrantsDeps) {}

  /** Open requests and sessions right now. */
  get size(): number {
    return this.entries.size;
  }

  /** Starts re-checking on access changes and on a timer. */
  start(): void {
    if (this.timer) return;
    this.unsubscribe = this.deps.subscribe(() => this.recheck());
    this.timer = setInterval(() => {
      if (this.entries.size > 0) void this.recheck().catch(this.deps.onError);
    }, this.deps.recheckMs ?? DEFAULT_RECHECK_MS);
    this.timer.unref();
  }

  /** Stops re-checking; tracked entries are left as they are. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /** Tracks an open request or session; `cut` ends it. Returns the function that stops tracking it. */
  track(grant: GatewayGrant, cut: () => void): () => void {
    const entry: LiveEntry = { grant, cut };
    this.entries.add(entry);
    return () => this.entries.delete(entry);
  }

  /**
   * Checks every tracked grant and cuts those that no longer hold. Calls made while a check runs
   * are folded into one more check after it.
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
    const entries = [...this.entries];
    const revoked = new Set(await this.deps.access.revokedGrants(entries.map((e) => e.grant)));
    for (const entry of entries) {
      if (!revoked.has(entry.grant) || !this.entries.has(entry)) continue;
      this.entries.delete(entry);
      entry.cut();
    }
  }
}
