/** Whose quota: one user's (all their sandboxes) or one team's (every member's sandboxes in the team). */
export type QuotaScope = 'user' | 'team';

/** The four resources a quota bounds, summed over active sandboxes. */
export interface QuotaAmounts<T> {
  /** Active sandboxes (PENDING, PROVISIONING, RUNNING, PAUSED). */
  sandboxes: T;
  cpuCores: T;
  memoryGb: T;
  diskGb: T;
}

/** Effective limits; null means no limit. */
export type QuotaLimits = QuotaAmounts<number | null>;

/** What active sandboxes use now. */
export type QuotaUsage = QuotaAmounts<number>;

/**
 * A stored override for one user or team. Per resource: null uses the server's default,
 * -1 means no limit, anything else is the limit.
 */
export interface QuotaRecord extends QuotaAmounts<number | null> {
  scope: QuotaScope;
  subjectId: string;
  updatedAt: string;
}

/** The limits a create must stay within: the owner's, and the team's when the sandbox is in one. */
export interface QuotaCheck {
  user: QuotaLimits;
  team: QuotaLimits | null;
}

/** A create would take a user or team past one of its limits; nothing was written. */
export class QuotaExceededError extends Error {
  constructor(
    readonly scope: QuotaScope,
    readonly subjectId: string,
    readonly resource: keyof QuotaLimits,
    readonly limit: number,
    readonly used: number,
    readonly asked: number,
  ) {
    super(`${scope} ${subjectId}: ${resource} ${used} + ${asked} > ${limit}`);
    this.name = 'QuotaExceededError';
  }
}

/** Small slack for sums of fractional cores and gigabytes. */
const EPSILON = 1e-9;

/** Throws QuotaExceededError when adding `asked` to `used` passes a limit; checks the count first. */
export function checkQuota(scope: QuotaScope, subjectId: string, limits: QuotaLimits, used: QuotaUsage, asked: QuotaUsage): void {
  for (const resource of ['sandboxes', 'cpuCores', 'memoryGb', 'diskGb'] as const) {
    const limit = limits[resource];
    if (limit !== null && used[resource] + asked[resource] > limit + EPSILON) {
      throw new QuotaExceededError(scope, subjectId, resource, limit, used[resource], asked[resource]);
    }
  }
}
