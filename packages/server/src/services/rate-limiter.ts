/** One limit: `limit` requests per `windowSeconds`, counted per user or per user and sandbox. */
export interface RateLimitRule {
  limit: number;
  windowSeconds: number;
  perSandbox: boolean;
}

/**
 * The Prime API's published limits (per 60 s, per token, and per sandbox where marked). Corral
 * counts them per user, so creating more keys does not multiply a user's limit.
 */
export const PRIME_RATE_LIMITS = {
  'sandbox.create': { limit: 500, windowSeconds: 60, perSandbox: false },
  'sandbox.list': { limit: 1000, windowSeconds: 60, perSandbox: false },
  'sandbox.bulkDelete': { limit: 50, windowSeconds: 60, perSandbox: false },
  'sandbox.get': { limit: 300, windowSeconds: 60, perSandbox: true },
  'sandbox.update': { limit: 300, windowSeconds: 60, perSandbox: true },
  'sandbox.delete': { limit: 500, windowSeconds: 60, perSandbox: false },
  'sandbox.auth': { limit: 120, windowSeconds: 60, perSandbox: true },
  'sandbox.errorContext': { limit: 600, windowSeconds: 60, perSandbox: true },
  'sandbox.logs': { limit: 300, windowSeconds: 60, perSandbox: true },
  'sandbox.batchStatus': { limit: 1000, windowSeconds: 60, perSandbox: false },
  // Corral's own (Prime publishes no limits for these): like `sandbox.get` / `sandbox.update`.
  'sandbox.egressPolicy.get': { limit: 300, windowSeconds: 60, perSandbox: true },
  'sandbox.egressPolicy.set': { limit: 60, windowSeconds: 60, perSandbox: true },
  'sandbox.egressLog': { limit: 300, windowSeconds: 60, perSandbox: true },
  'sandbox.pause': { limit: 60, windowSeconds: 60, perSandbox: true },
  // Checkpoints: Prime publishes no limits; a capture or delete like a pause, a read like `sandbox.get` (per checkpoint id: none in the path).
  'sandbox.checkpoint': { limit: 60, windowSeconds: 60, perSandbox: true },
  'sandbox.checkpointGet': { limit: 600, windowSeconds: 60, perSandbox: false },
  'sandbox.fork': { limit: 60, windowSeconds: 60, perSandbox: false },
  'sandbox.events': { limit: 300, windowSeconds: 60, perSandbox: true },
  'sandbox.stats': { limit: 300, windowSeconds: 60, perSandbox: true },
  'expose.create': { limit: 20, windowSeconds: 60, perSandbox: true },
  'expose.list': { limit: 60, windowSeconds: 60, perSandbox: true },
  'expose.delete': { limit: 20, windowSeconds: 60, perSandbox: true },
  'expose.listAll': { limit: 60, windowSeconds: 60, perSandbox: false },
  'ssh.create': { limit: 20, windowSeconds: 60, perSandbox: true },
  'ssh.delete': { limit: 20, windowSeconds: 60, perSandbox: true },
  'tunnel.create': { limit: 100, windowSeconds: 60, perSandbox: false },
  'tunnel.list': { limit: 300, windowSeconds: 60, perSandbox: false },
  'tunnel.bulkDelete': { limit: 100, windowSeconds: 60, perSandbox: false },
  'tunnel.get': { limit: 300, windowSeconds: 60, perSandbox: true },
  'tunnel.delete': { limit: 100, windowSeconds: 60, perSandbox: false },
  // Prime's images API (openapi-images.yml): list 300, build 150, delete and visibility 100 per minute.
  'images.list': { limit: 300, windowSeconds: 60, perSandbox: false },
  'images.build': { limit: 150, windowSeconds: 60, perSandbox: false },
  'images.delete': { limit: 100, windowSeconds: 60, perSandbox: false },
  'images.visibility': { limit: 100, windowSeconds: 60, perSandbox: false },
} as const satisfies Record<string, RateLimitRule>;

/** A named limit from the table above. */
export type RateLimitName = keyof typeof PRIME_RATE_LIMITS;

/** The outcome of counting one request. */
export type RateLimitDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * Fixed-window counters in memory, per server process. With several replicas each enforces
 * the limits on its own share of traffic.
 */
export class RateLimiter {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();
  private lastSweep = 0;

  constructor(private readonly enabled: boolean) {}

  /** Counts a request against a limit for a user, whichever of their keys sent it (and sandbox, when the rule is per sandbox). */
  hit(name: RateLimitName, userId: string, subjectId: string | undefined, now = Date.now()): RateLimitDecision {
    if (!this.enabled) return { allowed: true };
    const rule: RateLimitRule = PRIME_RATE_LIMITS[name];
    const key = rule.perSandbox && subjectId !== undefined ? `${name}|${userId}|${subjectId}` : `${name}|${userId}`;
    this.sweep(now);
    let window = this.windows.get(key);
    if (!window || window.resetAt <= now) {
      window = { count: 0, resetAt: now + rule.windowSeconds * 1000 };
      this.windows.set(key, window);
    }
    window.count += 1;
    if (window.count > rule.limit) {
      return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((window.resetAt - now) / 1000)) };
    }
    return { allowed: true };
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 10_000) return;
    this.lastSweep = now;
    for (const [key, window] of this.windows) if (window.resetAt <= now) this.windows.delete(key);
  }
}
