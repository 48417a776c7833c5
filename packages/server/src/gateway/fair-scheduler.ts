import { GatewayError, tooManyRequests } from '../errors/gateway-error.js';

/** Whose operation a slot is for: the sandbox's owner and the sandbox. */
export interface SlotOwner {
  userId: string;
  sandboxId: string;
  /** The sandbox's CPU cores; with {@link FairLimits.perCpu} they bound its slots. */
  cpuCores?: number;
}

/** The limits of one {@link FairScheduler}. */
export interface FairLimits {
  /** Slots held at once across the server. */
  global: number;
  /** Slots one user (a sandbox's owner) holds at once. */
  perUser: number;
  /** Slots one sandbox holds at once. */
  perSandbox: number;
  /**
   * Slots one sandbox holds at once per CPU core (`ceil(cpuCores × perCpu)`, at least 1, at most
   * `perSandbox`); 0 or unset: `perSandbox` alone. Keeps a 1-core sandbox from running 32 CPU-bound
   * commands at once, each then taking 32 times as long.
   */
  perCpu?: number;
  /** Operations one user may have waiting; one more is refused with 429. */
  maxQueuedPerUser: number;
}

/** What a waiter does once it is granted a slot. */
type Grant = () => void;

/** One user's waiters, by sandbox; both maps iterate in round-robin order (served keys move to the back). */
interface UserQueue {
  sandboxes: Map<string, Grant[]>;
  queued: number;
}

/** Releases a slot; calling it more than once does nothing. */
export type Release = () => void;

/**
 * Hands out slots fairly: at most `global` holders at once, at most `perUser` per user and
 * `perSandbox` per sandbox. Waiters queue per user and, within a user, per sandbox; a free slot
 * goes to the waiting user (under its own limits) that holds the fewest slots, ties in
 * round-robin order, and within that user to its next sandbox under its limit, round-robin
 * (FIFO within a sandbox). So one user with a thousand queued operations delays another user's
 * operation by at most one slot turn, never by its queue.
 */
export class FairScheduler {
  private active = 0;
  private readonly activeByUser = new Map<string, number>();
  private readonly activeBySandbox = new Map<string, number>();
  /** Each waiting sandbox's slot limit (dispatch has only the sandbox id of a waiter). */
  private readonly limitBySandbox = new Map<string, number>();
  private readonly users = new Map<string, UserQueue>();
  private waiting = 0;

  constructor(
    readonly name: string,
    readonly limits: FairLimits,
    /** Told how long each operation that had to wait waited for its slot, in ms. */
    private readonly onWaited?: (ms: number) => void,
  ) {}

  /** Holders right now. */
  get inUse(): number {
    return this.active;
  }

  /** Waiters right now. */
  get queued(): number {
    return this.waiting;
  }

  /** Slots `userId` holds right now. */
  heldBy(userId: string): number {
    return this.activeByUser.get(userId) ?? 0;
  }

  /** The slots `owner`'s sandbox may hold at once. */
  sandboxLimit(owner: SlotOwner): number {
    const { perSandbox, perCpu } = this.limits;
    if (!perCpu || owner.cpuCores === undefined || !(owner.cpuCores > 0)) return perSandbox;
    return Math.min(perSandbox, Math.max(1, Math.ceil(owner.cpuCores * perCpu)));
  }

  private eligible(owner: SlotOwner): boolean {
    return (
      this.active < this.limits.global &&
      (this.activeByUser.get(owner.userId) ?? 0) < this.limits.perUser &&
      (this.activeBySandbox.get(owner.sandboxId) ?? 0) < this.sandboxLimit(owner)
    );
  }

  private take(owner: SlotOwner): Release {
    this.active++;
    this.activeByUser.set(owner.userId, (this.activeByUser.get(owner.userId) ?? 0) + 1);
    this.activeBySandbox.set(owner.sandboxId, (this.activeBySandbox.get(owner.sandboxId) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      decrement(this.activeByUser, owner.userId);
      decrement(this.activeBySandbox, owner.sandboxId);
      this.dispatch();
      this.forgetIdle(owner);
    };
  }

  /** A slot now if one is free within every limit, else undefined (nothing is queued). */
  tryAcquire(owner: SlotOwner): Release | undefined {
    return this.eligible(owner) ? this.take(owner) : undefined;
  }

  /**
   * Resolves with a release function once a slot is granted. Rejects with a 429 when the user
   * already has `maxQueuedPerUser` operations waiting, and with `signal`'s reason when it aborts
   * while waiting (no slot is taken then).
   */
  acquire(owner: SlotOwner, signal?: AbortSignal): Promise<Release> {
    // After every dispatch no queued waiter is eligible, so an eligible newcomer jumps nobody.
    if (this.eligible(owner)) return Promise.resolve(this.take(owner));
    let queue = this.users.get(owner.userId);
    if ((queue?.queued ?? 0) >= this.limits.maxQueuedPerUser) {
      return Promise.reject(
        tooManyRequests(`Too Many Requests: ${this.limits.maxQueuedPerUser} ${this.name} operations of this user are already waiting`, 1),
      );
    }
    const queuedAt = performance.now();
    return new Promise<Release>((resolve, reject) => {
      const grant: Grant = () => {
        signal?.removeEventListener('abort', onAbort);
        this.onWaited?.(performance.now() - queuedAt);
        resolve(this.take(owner));
      };
      const onAbort = (): void => {
        if (this.remove(owner, grant)) reject(signal?.reason instanceof Error ? signal.reason : new GatewayError('client_closed', 'aborted'));
      };
      if (signal?.aborted) {
        reject(signal.reason instanceof Error ? signal.reason : new GatewayError('client_closed', 'aborted'));
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      if (!queue) {
        queue = { sandboxes: new Map(), queued: 0 };
        this.users.set(owner.userId, queue);
      }
      this.limitBySandbox.set(owner.sandboxId, this.sandboxLimit(owner));
      const waiters = queue.sandboxes.get(owner.sandboxId);
      if (waiters) waiters.push(grant);
      else queue.sandboxes.set(owner.sandboxId, [grant]);
      queue.queued++;
      this.waiting++;
    });
  }

  /** Runs `task` holding a slot. */
  async run<T>(owner: SlotOwner, task: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(owner, signal);
    try {
      return await task();
    } finally {
      release();
    }
  }

  private remove(owner: SlotOwner, grant: Grant): boolean {
    const queue = this.users.get(owner.userId);
    const waiters = queue?.sandboxes.get(owner.sandboxId);
    const index = waiters?.indexOf(grant) ?? -1;
    if (!queue || !waiters || index < 0) return false;
    waiters.splice(index, 1);
    if (waiters.length === 0) queue.sandboxes.delete(owner.sandboxId);
    queue.queued--;
    this.waiting--;
    if (queue.queued === 0) this.users.delete(owner.userId);
    this.forgetIdle(owner);
    return true;
  }

  /** Drops a sandbox's remembered limit once it has no waiter. */
  private forgetIdle(owner: SlotOwner): void {
    if (this.users.get(owner.userId)?.sandboxes.has(owner.sandboxId)) return;
    this.limitBySandbox.delete(owner.sandboxId);
  }

  /** Grants free slots to eligible waiters, users in round-robin order. */
  private dispatch(): void {
    while (this.waiting > 0 && this.active < this.limits.global) {
      const next = this.nextEligible();
      if (!next) return;
      const { userId, sandboxId, queue, waiters } = next;
      const grant = waiters.shift() as Grant;
      // The served sandbox and user go to the back of their rings.
      queue.sandboxes.delete(sandboxId);
      if (waiters.length > 0) queue.sandboxes.set(sandboxId, waiters);
      queue.queued--;
      this.waiting--;
      this.users.delete(userId);
      if (queue.queued > 0) this.users.set(userId, queue);
      grant();
    }
  }

  /**
   * The waiter to serve next: among users under their limit with a waiter whose sandbox is under
   * its limit, the one holding the fewest slots; ties go to ring order.
   */
  private nextEligible(): { userId: string; sandboxId: string; queue: UserQueue; waiters: Grant[] } | undefined {
    let best: { userId: string; sandboxId: string; queue: UserQueue; waiters: Grant[] } | undefined;
    let bestHeld = Number.POSITIVE_INFINITY;
    for (const [userId, queue] of this.users) {
      const held = this.activeByUser.get(userId) ?? 0;
      if (held >= this.limits.perUser || held >= bestHeld) continue;
      for (const [sandboxId, waiters] of queue.sandboxes) {
        if ((this.activeBySandbox.get(sandboxId) ?? 0) < (this.limitBySandbox.get(sandboxId) ?? this.limits.perSandbox)) {
          best = { userId, sandboxId, queue, waiters };
          bestHeld = held;
          break;
        }
      }
      if (bestHeld === 0) break;
    }
    return best;
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 1) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
