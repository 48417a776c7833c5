/** Where one exec's output reserves memory: `reserve` grants up to the bytes asked, `release` gives them back. */
export interface OutputReservation {
  reserve(bytes: number): number;
  release(bytes: number): void;
}

/**
 * A server-wide budget of bytes held in memory for in-flight exec output, with a share per user.
 * Each call's output reserves from it as it arrives and gives its reservation back once its
 * answer has been sent, so the total held across every call stays at most `limit`, and one
 * user's calls hold at most `perUserLimit` of it (which also bounds how much output one user
 * makes the server serialize at once).
 */
export class OutputBudget {
  private used = 0;
  private readonly usedByUser = new Map<string, number>();

  constructor(
    readonly limit: number,
    readonly perUserLimit: number,
  ) {}

  /** Bytes reserved right now. */
  get inUse(): number {
    return this.used;
  }

  /** The reservation handle of one of `userId`'s calls. */
  forUser(userId: string): OutputReservation {
    return {
      reserve: (bytes) => {
        const mine = this.usedByUser.get(userId) ?? 0;
        const granted = Math.max(0, Math.min(bytes, this.limit - this.used, this.perUserLimit - mine));
        if (granted > 0) {
          this.used += granted;
          this.usedByUser.set(userId, mine + granted);
        }
        return granted;
      },
      release: (bytes) => {
        if (bytes <= 0) return;
        this.used = Math.max(0, this.used - bytes);
        const left = (this.usedByUser.get(userId) ?? 0) - bytes;
        if (left > 0) this.usedByUser.set(userId, left);
        else this.usedByUser.delete(userId);
      },
    };
  }
}
