/**
 * A server-wide budget of bytes held in memory for in-flight exec output. Each call's output
 * reserves from it as it arrives and gives its reservation back once answered, so the total
 * held across every call stays at most `limit`, not only per call.
 */
export class OutputBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  /** Bytes reserved right now. */
  get inUse(): number {
    return this.used;
  }

  /** Reserves up to `bytes`; returns how many were granted (0 when the budget is spent). */
  reserve(bytes: number): number {
    const granted = Math.max(0, Math.min(bytes, this.limit - this.used));
    this.used += granted;
    return granted;
  }

  /** Gives back `bytes` reserved earlier. */
  release(bytes: number): void {
    this.used = Math.max(0, this.used - bytes);
  }
}
