import type { Store } from '../store/store.js';
import type { TeamRole } from '../records/account-records.js';
import type { SandboxRecord } from '../records/sandbox-records.js';
import { maySeeSandbox } from './sandbox-visibility.js';

/** The user behind a live API key, with their team roles. */
export interface KeyHolder {
  userId: string;
  teams: ReadonlyMap<string, TeamRole>;
}

/** How long one answer is reused; access taken away on another replica is seen within this. */
const DEFAULT_TTL_MS = 1_500;

/**
 * Re-checks, on use, access that was granted earlier (a gateway token, an SSH session, a tunnel
 * link): the API key that granted it is still unrevoked, its user still exists, and that user may
 * still see the sandbox. Answers are cached per key for a second or two so the data plane's hot
 * path stays one map lookup; `invalidate()` (on an access change in this process) drops the cache.
 */
export class AccessChecker {
  private readonly cache = new Map<string, { holder: KeyHolder | null; expires: number }>();
  private readonly loading = new Map<string, Promise<KeyHolder | null>>();
  private generation = 0;

  constructor(
    private readonly store: Store,
    private readonly ttlMs = DEFAULT_TTL_MS,
  ) {}

  /** The holder of a key that is still live (not revoked, user exists), else null. */
  async keyHolder(apiKeyId: string, now = Date.now()): Promise<KeyHolder | null> {
    const cached = this.cache.get(apiKeyId);
    if (cached && cached.expires > now) return cached.holder;
    const inFlight = this.loading.get(apiKeyId);
    if (inFlight) return inFlight;
    const generation = this.generation;
    const pending: Promise<KeyHolder | null> = this.load(apiKeyId)
      .then((holder) => {
        if (generation === this.generation) {
          if (this.cache.size > 50_000) this.cache.clear();
          this.cache.set(apiKeyId, { holder, expires: Date.now() + this.ttlMs });
        }
        return holder;
      })
      .finally(() => {
        if (this.loading.get(apiKeyId) === pending) this.loading.delete(apiKeyId);
      });
    this.loading.set(apiKeyId, pending);
    return pending;
  }

  /**
   * Whether access granted through `apiKeyId` to `sandbox` still holds. With `userId`, the key must
   * also still belong to that user (a token's `uid`).
   */
  async maySee(apiKeyId: string, sandbox: Pick<SandboxRecord, 'userId' | 'teamId'>, userId?: string): Promise<boolean> {
    const holder = await this.keyHolder(apiKeyId);
    if (!holder || (userId !== undefined && holder.userId !== userId)) return false;
    return maySeeSandbox(holder.userId, holder.teams, sandbox);
  }

  /** Forgets every cached answer (and answers being loaded), so the next check reads the store. */
  invalidate(): void {
    this.generation += 1;
    this.cache.clear();
    this.loading.clear();
  }

  private async load(apiKeyId: string): Promise<KeyHolder | null> {
    const key = await this.store.getApiKey(apiKeyId);
    if (!key || key.revokedAt !== null) return null;
    const user = await this.store.getUser(key.userId);
    if (!user) return null;
    const memberships = await this.store.listMemberships(user.id);
    return { userId: user.id, teams: new Map(memberships.map((m) => [m.teamId, m.role])) };
  }
}
