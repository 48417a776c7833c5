import { RuntimeError } from '../runtime.js';
import { type EgressPolicy, egressPolicyProblems } from './egress-policy.js';

/**
 * Serializes a driver's egress policy changes per sandbox, so that they apply in the order they
 * were asked for, and refuses an invalid policy before any of it is applied.
 */
export class EgressChanges {
  private readonly inFlight = new Map<string, Promise<void>>();

  /** Runs `change(policy)` for `runtimeId` after the changes already queued for it; resolves when it is done. */
  async apply(runtimeId: string, policy: EgressPolicy, change: (policy: EgressPolicy) => Promise<void>): Promise<void> {
    const problems = egressPolicyProblems(policy);
    if (problems.length > 0) throw new RuntimeError('RUNTIME_ERROR', `invalid egress policy: ${problems.map((p) => `${p.field} ${p.reason}`).join('; ')}`);
    const previous = this.inFlight.get(runtimeId) ?? Promise.resolve();
    const job = previous.catch(() => undefined).then(() => change(policy));
    this.inFlight.set(runtimeId, job);
    try {
      await job;
    } finally {
      if (this.inFlight.get(runtimeId) === job) this.inFlight.delete(runtimeId);
    }
  }
}
