/** The outcome of counting one request. */
export type RateDecision = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * A token bucket per user, in memory: each user may make `burst` requests at once and then
 * `ratePerSecond` requests per second. Idle users' buckets are dropped once full again.
 */
export class UserRateLimit {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private lastSweep = 0;

  constructor(
    readonly ratePerSecond: number,
    readonly burst: number,
  ) {}

  /** Counts one request of `userId` at `now` (ms). */
  hit(userId: string, now = Date.now()): RateDecision {
    this.sweep(now);
    const bucket = this.buckets.get(userId) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.ratePerSecond);
    bucket.at = now;
    this.buckets.set(userId, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return { allowed: true };
    }
    return { allowed: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - bucket.tokens) / this.ratePerSecond)) };
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 10_000) return;
    this.lastSweep = now;
    const refill = (this.burst / this.ratePerSecond) * 1000;
    for (const [userId, bucket] of this.buckets) if (now - bucket.at >= refill) this.buckets.delete(userId);
  }
}
