import type { CorralConfig } from '../config.js';
import { ApiError } from '../errors/api-error.js';
import { type QuotaCheck, QuotaExceededError, type QuotaLimits, type QuotaRecord, type QuotaScope, type QuotaUsage } from '../records/quota-records.js';
import type { Store } from '../store/store.js';
import { nowIso } from '../util/time.js';
import type { Principal } from './auth-service.js';

/** A quota as the API shows it: effective limits (null: none), the stored overrides and current usage. */
export interface QuotaView {
  scope: QuotaScope;
  subject_id: string;
  limits: { sandboxes: number | null; cpu_cores: number | null; memory_gb: number | null; disk_gb: number | null };
  /** Per resource: null uses the server default, -1 means no limit. */
  overrides: { sandboxes: number | null; cpu_cores: number | null; memory_gb: number | null; disk_gb: number | null };
  usage: { sandboxes: number; cpu_cores: number; memory_gb: number; disk_gb: number };
}

/** An override as the API takes it; a missing or null field uses the server default, -1 means no limit. */
export interface QuotaOverrideInput {
  sandboxes?: number | null;
  cpu_cores?: number | null;
  memory_gb?: number | null;
  disk_gb?: number | null;
}

const NO_OVERRIDE: Omit<QuotaRecord, 'scope' | 'subjectId' | 'updatedAt'> = { sandboxes: null, cpuCores: null, memoryGb: null, diskGb: null };

function wire<T>(q: { sandboxes: T; cpuCores: T; memoryGb: T; diskGb: T }): { sandboxes: T; cpu_cores: T; memory_gb: T; disk_gb: T } {
  return { sandboxes: q.sandboxes, cpu_cores: q.cpuCores, memory_gb: q.memoryGb, disk_gb: q.diskGb };
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/**
 * Quotas over active sandboxes, per user and per team: a count and total CPU, memory and disk.
 * Limits come from a stored override, else the server's defaults (`CORRAL_QUOTA_*` for users,
 * `CORRAL_TEAM_QUOTA_*` for teams). Server admins have no default user quota, only one set for
 * them. The store checks the limits and inserts in one serialized transaction.
 */
export class QuotaService {
  constructor(
    private readonly store: Store,
    private readonly config: CorralConfig,
  ) {}

  /** The limits a create by `caller` (in `teamId`, if any) must stay within. */
  async checkFor(caller: Principal, teamId: string | null): Promise<QuotaCheck> {
    const user = await this.effective('user', caller.user.id, caller.user.isAdmin);
    const team = teamId === null ? null : await this.effective('team', teamId, false);
    return { user, team };
  }

  /**
   * Refuses (403 `QUOTA_EXCEEDED`) a new checkpoint while the owner's (or the team's) disk use —
   * active sandboxes' disks plus stored checkpoint bytes — is at or past its disk limit.
   */
  async checkCheckpointDisk(userId: string, teamId: string | null): Promise<void> {
    const user = await this.store.getUser(userId);
    const scopes: Array<[QuotaScope, string, boolean]> = [['user', userId, user?.isAdmin ?? false]];
    if (teamId !== null) scopes.push(['team', teamId, false]);
    for (const [scope, subjectId, isAdminUser] of scopes) {
      const limit = (await this.effective(scope, subjectId, isAdminUser)).diskGb;
      if (limit === null) continue;
      const used = (await this.store.quotaUsage(scope, subjectId)).diskGb;
      if (used >= limit) {
        const who = scope === 'user' ? "the sandbox's owner" : `team ${subjectId}`;
        throw new ApiError(
          'QUOTA_EXCEEDED',
          `Quota exceeded: ${who} may use at most ${limit} GB of disk in active sandboxes and checkpoints (${Math.round(used * 1000) / 1000} in use); delete checkpoints or end sandboxes first`,
        );
      }
    }
  }

  /** The API error for a refused create, in Prime's `{detail}` shape. */
  static toApiError(error: QuotaExceededError): ApiError {
    const who = error.scope === 'user' ? 'you' : `team ${error.subjectId}`;
    const what: Record<keyof QuotaLimits, string> = {
      sandboxes: `may run at most ${plural(error.limit, 'sandbox', 'sandboxes')} at once (${error.used} active)`,
      cpuCores: `may use at most ${error.limit} CPU cores in active sandboxes (${error.used} in use, ${error.asked} asked)`,
      memoryGb: `may use at most ${error.limit} GB of memory in active sandboxes (${error.used} in use, ${error.asked} asked)`,
      diskGb: `may use at most ${error.limit} GB of disk in active sandboxes and checkpoints (${error.used} in use, ${error.asked} asked)`,
    };
    return new ApiError('QUOTA_EXCEEDED', `Quota exceeded: ${who} ${what[error.resource]}; end a sandbox or ask an administrator to raise the quota`);
  }

  /** A user's quota: the user themself or a server admin may read it. */
  async viewUser(caller: Principal, userId: string): Promise<QuotaView> {
    if (userId !== caller.user.id && !caller.user.isAdmin) throw new ApiError('RESOURCE_NOT_FOUND', `User ${userId} not found`);
    const user = await this.store.getUser(userId);
    if (!user) throw new ApiError('RESOURCE_NOT_FOUND', `User ${userId} not found`);
    return this.view('user', userId, user.isAdmin);
  }

  /** A team's quota: its members or a server admin may read it. */
  async viewTeam(caller: Principal, teamId: string): Promise<QuotaView> {
    if (!caller.teams.has(teamId) && !caller.user.isAdmin) throw new ApiError('RESOURCE_NOT_FOUND', `Team ${teamId} not found`);
    if (!(await this.store.getTeam(teamId))) throw new ApiError('RESOURCE_NOT_FOUND', `Team ${teamId} not found`);
    return this.view('team', teamId, false);
  }

  /** Sets a user's or team's override (server admins only). */
  async set(caller: Principal, scope: QuotaScope, subjectId: string, input: QuotaOverrideInput): Promise<QuotaView> {
    const isAdminUser = await this.requireSubject(caller, scope, subjectId);
    for (const [field, value] of Object.entries(input)) {
      if (typeof value === 'number' && value < 0 && value !== -1) throw ApiError.invalid(field, 'must be 0 or more, -1 for no limit, or null for the server default');
    }
    await this.store.putQuota({
      scope,
      subjectId,
      sandboxes: input.sandboxes ?? null,
      cpuCores: input.cpu_cores ?? null,
      memoryGb: input.memory_gb ?? null,
      diskGb: input.disk_gb ?? null,
      updatedAt: nowIso(),
    });
    return this.view(scope, subjectId, isAdminUser);
  }

  /** Removes a user's or team's override: the defaults apply again (server admins only). */
  async clear(caller: Principal, scope: QuotaScope, subjectId: string): Promise<QuotaView> {
    const isAdminUser = await this.requireSubject(caller, scope, subjectId);
    await this.store.deleteQuota(scope, subjectId);
    return this.view(scope, subjectId, isAdminUser);
  }

  private async requireSubject(caller: Principal, scope: QuotaScope, subjectId: string): Promise<boolean> {
    if (!caller.user.isAdmin) throw new ApiError('FORBIDDEN', 'Changing quotas needs a server administrator key');
    if (scope === 'team') {
      if (!(await this.store.getTeam(subjectId))) throw new ApiError('RESOURCE_NOT_FOUND', `Team ${subjectId} not found`);
      return false;
    }
    const user = await this.store.getUser(subjectId);
    if (!user) throw new ApiError('RESOURCE_NOT_FOUND', `User ${subjectId} not found`);
    return user.isAdmin;
  }

  private async view(scope: QuotaScope, subjectId: string, isAdminUser: boolean): Promise<QuotaView> {
    const [limits, stored, usage] = await Promise.all([
      this.effective(scope, subjectId, isAdminUser),
      this.store.getQuota(scope, subjectId),
      this.store.quotaUsage(scope, subjectId),
    ]);
    return { scope, subject_id: subjectId, limits: wire(limits), overrides: wire(stored ?? NO_OVERRIDE), usage: wire<number>(usage satisfies QuotaUsage) };
  }

  private async effective(scope: QuotaScope, subjectId: string, isAdminUser: boolean): Promise<QuotaLimits> {
    const stored = await this.store.getQuota(scope, subjectId);
    const c = this.config;
    const defaults: QuotaLimits = isAdminUser
      ? { sandboxes: null, cpuCores: null, memoryGb: null, diskGb: null }
      : scope === 'user'
        ? { sandboxes: c.quotaSandboxes, cpuCores: c.quotaCpuCores, memoryGb: c.quotaMemoryGb, diskGb: c.quotaDiskGb }
        : { sandboxes: c.teamQuotaSandboxes, cpuCores: c.teamQuotaCpuCores, memoryGb: c.teamQuotaMemoryGb, diskGb: c.teamQuotaDiskGb };
    const pick = (override: number | null | undefined, fallback: number | null): number | null =>
      override === null || override === undefined ? fallback : override < 0 ? null : override;
    return {
      sandboxes: pick(stored?.sandboxes, defaults.sandboxes),
      cpuCores: pick(stored?.cpuCores, defaults.cpuCores),
      memoryGb: pick(stored?.memoryGb, defaults.memoryGb),
      diskGb: pick(stored?.diskGb, defaults.diskGb),
    };
  }
}

export { QuotaExceededError };
