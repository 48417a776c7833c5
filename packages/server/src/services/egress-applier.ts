import type { Logger } from 'pino';
import type { EgressPolicy } from '../runtime/egress/egress-policy.js';
import type { SandboxRuntime } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import type { SandboxRecord } from '../records/sandbox-records.js';

/** A failed apply is retried after 1 s, then twice as long after each failure, up to a minute. */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 60_000;

/** A stored sandbox's current egress policy. */
export function egressPolicyOf(sandbox: SandboxRecord): EgressPolicy {
  return { allowlist: sandbox.networkAllowlist, denylist: sandbox.networkDenylist };
}

/** Whether a policy lets everything out: no list, or an empty deny list. */
export function isOpenEgress(policy: EgressPolicy): boolean {
  return policy.allowlist === null && (policy.denylist === null || policy.denylist.length === 0);
}

/** Whether a policy is the empty allow list: no egress at all. */
export function isNoEgress(policy: EgressPolicy): boolean {
  return policy.allowlist !== null && policy.allowlist.length === 0;
}

/** Whether a driver enforces egress policies (`RuntimeCapabilities.egressPolicy`). */
export function enforcesEgress(runtime: SandboxRuntime): boolean {
  return runtime.capabilities().egressPolicy === true;
}

/**
 * Hands stored egress policies to the runtime and records what it enforces
 * (`egressAppliedGeneration`). Applies to one sandbox run one at a time, each reading the row
 * afresh, so a later policy is never overwritten by an earlier one. It remembers which generation
 * the runtime of *this process* was given: drivers keep enforcement state in memory, so after a
 * restart every running sandbox with a policy is applied again (the reconciler asks
 * {@link needsApply}). Failures are retried with backoff.
 */
export class EgressApplier {
  private readonly chains = new Map<string, Promise<SandboxRecord | undefined>>();
  /** Sandbox id → the generation this process's runtime was given (at create or by an apply). */
  private readonly enforced = new Map<string, number>();
  private readonly retries = new Map<string, { attempts: number; retryAt: number }>();

  constructor(
    private readonly store: Store,
    private readonly runtime: SandboxRuntime | null,
    private readonly log: Logger,
    /** This server instance: only its own sandboxes are applied here. */
    private readonly instanceId: string,
  ) {}

  /** Records that the runtime created the sandbox with generation `generation` of its policy. */
  noteCreated(sandboxId: string, generation: number): void {
    this.enforced.set(sandboxId, generation);
    this.retries.delete(sandboxId);
  }

  /** Forgets an ended sandbox. */
  forget(sandboxId: string): void {
    this.enforced.delete(sandboxId);
    this.retries.delete(sandboxId);
  }

  /**
   * Whether a running sandbox's policy must be handed to the runtime now: a generation not yet
   * applied, or (after a restart) a policy this process's runtime was never given. A sandbox created
   * open and never changed, and one without network, need nothing. Honours the retry backoff.
   */
  needsApply(sandbox: SandboxRecord, now = Date.now()): boolean {
    if (!this.runtime || sandbox.status !== 'RUNNING' || sandbox.runtimeId === null || sandbox.runtimeOwner !== this.instanceId) return false;
    const enforced = this.enforced.get(sandbox.id);
    const behind = sandbox.egressAppliedGeneration < sandbox.egressGeneration;
    if (!behind) {
      if (enforced !== undefined && enforced >= sandbox.egressGeneration) return false;
      if (!sandbox.networkAccess && !enforcesEgress(this.runtime)) return false;
      if (sandbox.egressGeneration <= 1 && isOpenEgress(egressPolicyOf(sandbox))) return false;
    }
    const retry = this.retries.get(sandbox.id);
    return retry === undefined || now >= retry.retryAt;
  }

  /**
   * Applies the sandbox's stored policy (read afresh) to its running container and records the
   * generation as applied. Resolves with the row afterwards; rejects with the driver's error
   * (and schedules a retry). A sandbox that is not running is left alone.
   */
  apply(sandboxId: string): Promise<SandboxRecord | undefined> {
    const previous = this.chains.get(sandboxId) ?? Promise.resolve(undefined);
    const next = previous.catch(() => undefined).then(() => this.applyNow(sandboxId));
    this.chains.set(sandboxId, next);
    const cleanup = (): void => {
      if (this.chains.get(sandboxId) === next) this.chains.delete(sandboxId);
    };
    next.then(cleanup, cleanup);
    return next;
  }

  private async applyNow(sandboxId: string): Promise<SandboxRecord | undefined> {
    const sandbox = await this.store.getSandbox(sandboxId);
    if (!this.runtime || !sandbox || sandbox.status !== 'RUNNING' || sandbox.runtimeId === null || sandbox.runtimeOwner !== this.instanceId) return sandbox;
    const generation = sandbox.egressGeneration;
    try {
      // On a driver that enforces no policy, a sandbox without network has only `lo`: its one possible
      // policy (the empty allow list) holds by construction, and so does an open one.
      const policy = egressPolicyOf(sandbox);
      const enforces = enforcesEgress(this.runtime);
      const holdsAlready = !enforces && (!sandbox.networkAccess || isOpenEgress(policy));
      if (!holdsAlready) await this.runtime.setEgressPolicy(sandbox.runtimeId, policy);
    } catch (error) {
      const attempts = (this.retries.get(sandboxId)?.attempts ?? 0) + 1;
      this.retries.set(sandboxId, { attempts, retryAt: Date.now() + Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** (attempts - 1)) });
      this.log.warn({ err: error, sandboxId, generation, attempts }, 'could not apply the egress policy; will retry');
      throw error;
    }
    this.enforced.set(sandboxId, Math.max(generation, this.enforced.get(sandboxId) ?? 0));
    this.retries.delete(sandboxId);
    return (await this.store.markEgressApplied(sandboxId, generation)) ?? sandbox;
  }

  /** Waits for the applies in flight. */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.chains.values()]);
  }
}
