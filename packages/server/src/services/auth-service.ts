import { createHash, timingSafeEqual } from 'node:crypto';
import { ApiError } from '../errors/api-error.js';
import type { Store } from '../store/store.js';
import type { ApiKeyRecord, TeamMemberRecord, TeamRecord, TeamRole, UserRecord } from '../records/account-records.js';
import { newId, newSecret } from '../util/ids.js';
import { nowIso } from '../util/time.js';
import { AccessEvents } from './access-events.js';

/** Who is calling: the user behind a valid API key, with their team roles. */
export interface Principal {
  user: UserRecord;
  apiKeyId: string;
  /** teamId → role. */
  teams: ReadonlyMap<string, TeamRole>;
}

/** A key as listings show it: never the secret. */
export interface ApiKeyView {
  id: string;
  name: string;
  prefix: string;
  user_id: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

const KEY_PREFIX = 'corral_';
const CACHE_TTL_MS = 5_000;

function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

function viewKey(key: ApiKeyRecord): ApiKeyView {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    user_id: key.userId,
    created_at: key.createdAt,
    last_used_at: key.lastUsedAt,
    revoked_at: key.revokedAt,
  };
}

/**
 * Users, teams and API keys. Keys are random, returned once at creation, stored as
 * SHA-256 hashes, and revocable. Verified keys are cached for a few seconds so the hot
 * path does one hash and one map lookup; revocation through this service clears the cache.
 * Every change that takes access away (a key revoked, a user deleted, a membership removed or
 * changed, a team deleted) is announced on `events` once stored, and the call waits for the
 * listeners, so what they cut off is cut off when the API answers.
 */
export class AuthService {
  private readonly cache = new Map<string, { principal: Principal; expires: number }>();
  private readonly lastUsedWrites = new Map<string, number>();

  constructor(
    private readonly store: Store,
    /** Where access changes are announced. */
    readonly events: AccessEvents = new AccessEvents(),
  ) {}

  /** Resolves a bearer key to its principal, or throws 401. */
  async authenticate(key: string | undefined): Promise<Principal> {
    if (!key) throw new ApiError('UNAUTHORIZED', 'Missing API key: send "Authorization: Bearer <key>"');
    const hash = hashKey(key);
    const now = Date.now();
    const cached = this.cache.get(hash);
    if (cached && cached.expires > now) return cached.principal;
    const record = await this.store.getApiKeyByHash(hash);
    if (!record || record.revokedAt !== null || !timingSafeEqual(Buffer.from(record.keyHash), Buffer.from(hash))) {
      this.cache.delete(hash);
      throw new ApiError('UNAUTHORIZED', 'Invalid or revoked API key');
    }
    const user = await this.store.getUser(record.userId);
    if (!user) throw new ApiError('UNAUTHORIZED', 'Invalid or revoked API key');
    const memberships = await this.store.listMemberships(user.id);
    const principal: Principal = {
      user,
      apiKeyId: record.id,
      teams: new Map(memberships.map((m) => [m.teamId, m.role])),
    };
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(hash, { principal, expires: now + CACHE_TTL_MS });
    const lastWrite = this.lastUsedWrites.get(record.id) ?? 0;
    if (now - lastWrite > 60_000) {
      this.lastUsedWrites.set(record.id, now);
      void this.store.markApiKeyUsed(record.id, nowIso()).catch(() => undefined);
    }
    return principal;
  }

  /**
   * Makes sure the server has an administrator. With `bootstrapKey`, an admin key with exactly
   * that value exists afterwards. Without it, the first start creates an admin and returns the
   * new key so the caller can print it once; later starts return null.
   */
  async bootstrap(bootstrapKey: string | null): Promise<{ createdKey: string | null }> {
    // Replicas starting together on a fresh store race to insert the admin user and key: the
    // loser's insert fails on a unique constraint, and reading again finds the winner's rows.
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.bootstrapOnce(bootstrapKey);
      } catch (error) {
        if (attempt >= 3) throw error;
      }
    }
  }

  private async bootstrapOnce(bootstrapKey: string | null): Promise<{ createdKey: string | null }> {
    let admin = await this.store.getUserByName('admin');
    const users = admin ? [admin] : await this.store.listUsers();
    if (!admin && users.length === 0) {
      admin = { id: newId(), name: 'admin', email: null, isAdmin: true, createdAt: nowIso() };
      await this.store.insertUser(admin);
    }
    if (bootstrapKey !== null) {
      if (!admin) throw new Error('CORRAL_BOOTSTRAP_API_KEY is set but the store has no "admin" user');
      const existing = await this.store.getApiKeyByHash(hashKey(bootstrapKey));
      if (!existing) {
        await this.store.insertApiKey({
          id: newId(),
          userId: admin.id,
          name: 'bootstrap',
          prefix: bootstrapKey.slice(0, 12),
          keyHash: hashKey(bootstrapKey),
          createdAt: nowIso(),
          lastUsedAt: null,
          revokedAt: null,
        });
      }
      return { createdKey: null };
    }
    if (admin && users.length <= 1 && (await this.store.listApiKeys(admin.id)).length === 0) {
      const { key } = await this.createKey(admin.id, 'initial admin key');
      return { createdKey: key };
    }
    return { createdKey: null };
  }

  /** Creates a key for a user and returns the secret, which is never shown again. */
  async createKey(userId: string, name: string): Promise<{ key: string; record: ApiKeyView }> {
    const user = await this.store.getUser(userId);
    if (!user) throw new ApiError('RESOURCE_NOT_FOUND', `User ${userId} not found`);
    const key = `${KEY_PREFIX}${newSecret(40)}`;
    const record: ApiKeyRecord = {
      id: newId(),
      userId,
      name,
      prefix: key.slice(0, 12),
      keyHash: hashKey(key),
      createdAt: nowIso(),
      lastUsedAt: null,
      revokedAt: null,
    };
    await this.store.insertApiKey(record);
    return { key, record: viewKey(record) };
  }

  /** Keys of one user, or of everyone for an admin who asks for all. */
  async listKeys(caller: Principal, userId: string | undefined): Promise<ApiKeyView[]> {
    const target = userId ?? caller.user.id;
    if (target !== caller.user.id) this.requireAdmin(caller);
    return (await this.store.listApiKeys(target)).map(viewKey);
  }

  /** Revokes a key owned by the caller (any key, for an admin). */
  async revokeKey(caller: Principal, keyId: string): Promise<void> {
    const key = await this.store.getApiKey(keyId);
    if (!key || (key.userId !== caller.user.id && !caller.user.isAdmin)) {
      throw new ApiError('RESOURCE_NOT_FOUND', `API key ${keyId} not found`);
    }
    if (key.revokedAt !== null) return;
    await this.store.revokeApiKey(keyId, nowIso());
    this.cache.delete(key.keyHash);
    await this.events.emit({ kind: 'keyRevoked', keyId, userId: key.userId });
  }

  /** Creates a key on behalf of `userId` (self, or anyone for an admin). */
  async createKeyFor(caller: Principal, userId: string | undefined, name: string): Promise<{ key: string; record: ApiKeyView }> {
    const target = userId ?? caller.user.id;
    if (target !== caller.user.id) this.requireAdmin(caller);
    return this.createKey(target, name);
  }

  async createUser(caller: Principal, input: { name: string; email?: string | null; isAdmin?: boolean }): Promise<UserRecord> {
    this.requireAdmin(caller);
    if (await this.store.getUserByName(input.name)) throw new ApiError('CONFLICT', `A user named "${input.name}" already exists`);
    const user: UserRecord = { id: newId(), name: input.name, email: input.email ?? null, isAdmin: input.isAdmin ?? false, createdAt: nowIso() };
    await this.store.insertUser(user);
    return user;
  }

  async listUsers(caller: Principal): Promise<UserRecord[]> {
    this.requireAdmin(caller);
    return this.store.listUsers();
  }

  async deleteUser(caller: Principal, userId: string): Promise<void> {
    this.requireAdmin(caller);
    if (userId === caller.user.id) throw new ApiError('CONFLICT', 'You cannot delete your own user');
    if (!(await this.store.deleteUser(userId))) throw new ApiError('RESOURCE_NOT_FOUND', `User ${userId} not found`);
    this.cache.clear();
    await this.events.emit({ kind: 'userDeleted', userId });
  }

  async createTeam(caller: Principal, name: string): Promise<TeamRecord> {
    this.requireAdmin(caller);
    if (await this.store.getTeamByName(name)) throw new ApiError('CONFLICT', `A team named "${name}" already exists`);
    const team: TeamRecord = { id: newId(), name, createdAt: nowIso() };
    await this.store.insertTeam(team);
    return team;
  }

  /** Every team for an admin; otherwise the caller's own. */
  async listTeams(caller: Principal): Promise<Array<TeamRecord & { role: TeamRole | null }>> {
    const teams = await this.store.listTeams();
    return teams
      .filter((t) => caller.user.isAdmin || caller.teams.has(t.id))
      .map((t) => ({ ...t, role: caller.teams.get(t.id) ?? null }));
  }

  async deleteTeam(caller: Principal, teamId: string): Promise<void> {
    this.requireAdmin(caller);
    if (!(await this.store.deleteTeam(teamId))) throw new ApiError('RESOURCE_NOT_FOUND', `Team ${teamId} not found`);
    this.cache.clear();
    await this.events.emit({ kind: 'teamDeleted', teamId });
  }

  async listMembers(caller: Principal, teamId: string): Promise<TeamMemberRecord[]> {
    await this.requireTeamVisible(caller, teamId);
    return this.store.listTeamMembers(teamId);
  }

  /** Adds a member or changes a role: server admins and team admins may. */
  async setMember(caller: Principal, teamId: string, userId: string, role: TeamRole): Promise<TeamMemberRecord> {
    await this.requireTeamAdmin(caller, teamId);
    if (!(await this.store.getUser(userId))) throw new ApiError('RESOURCE_NOT_FOUND', `User ${userId} not found`);
    const member: TeamMemberRecord = { teamId, userId, role, createdAt: nowIso() };
    await this.store.upsertTeamMember(member);
    this.cache.clear();
    await this.events.emit({ kind: 'membershipChanged', teamId, userId });
    return member;
  }

  async removeMember(caller: Principal, teamId: string, userId: string): Promise<void> {
    await this.requireTeamAdmin(caller, teamId);
    if (!(await this.store.removeTeamMember(teamId, userId))) {
      throw new ApiError('RESOURCE_NOT_FOUND', `User ${userId} is not a member of team ${teamId}`);
    }
    this.cache.clear();
    await this.events.emit({ kind: 'membershipChanged', teamId, userId });
  }

  private requireAdmin(caller: Principal): void {
    if (!caller.user.isAdmin) throw new ApiError('FORBIDDEN', 'This needs a server administrator key');
  }

  private async requireTeamVisible(caller: Principal, teamId: string): Promise<void> {
    const team = await this.store.getTeam(teamId);
    if (!team || (!caller.user.isAdmin && !caller.teams.has(teamId))) {
      throw new ApiError('RESOURCE_NOT_FOUND', `Team ${teamId} not found`);
    }
  }

  private async requireTeamAdmin(caller: Principal, teamId: string): Promise<void> {
    await this.requireTeamVisible(caller, teamId);
    if (!caller.user.isAdmin && caller.teams.get(teamId) !== 'admin') {
      throw new ApiError('FORBIDDEN', `Only admins of team ${teamId} can change its members`);
    }
  }
}
