import { ApiError } from '../errors/api-error.js';
import { type EgressPolicy, egressPolicyProblems, normalizeEgressPolicy, parseEgressEntry } from '../runtime/egress/egress-policy.js';
import { type EgressLogEntry, RuntimeError, type SandboxRuntime } from '../runtime/runtime.js';
import type { Store } from '../store/store.js';
import type { Principal } from './auth-service.js';
import { egressPolicyOf, enforcesEgress, isNoEgress, isOpenEgress } from './egress-applier.js';
import type { SandboxLifecycle } from './sandbox-lifecycle.js';
import { ACTIVE_STATUSES, isTerminal, type SandboxRecord } from '../records/sandbox-records.js';
import type { SandboxService } from './sandbox-service.js';
import { orAfter } from '../util/time.js';

/** How long a `PUT …/egress-policy` waits for the runtime to apply the policy before answering `applied: false`. */
export const EGRESS_APPLY_WAIT_MS = 1_000;

/** The most egress log entries one request returns, and the default. */
export const EGRESS_LOG_MAX_LIMIT = 1_000;
export const EGRESS_LOG_DEFAULT_LIMIT = 100;

/** A sandbox's egress policy and how far the runtime has caught up with it (Prime's `EgressPolicyStatus`). */
export interface EgressPolicyStatus {
  policy: EgressPolicy;
  /** Bumped by every change; 1 at create. */
  generation: number;
  /** The newest generation the runtime enforces (0 until the sandbox runs). */
  appliedGeneration: number;
  /** `appliedGeneration >= generation`. */
  applied: boolean;
}

/** The status of a stored sandbox's policy. */
export function egressStatusOf(sandbox: SandboxRecord): EgressPolicyStatus {
  return {
    policy: egressPolicyOf(sandbox),
    generation: sandbox.egressGeneration,
    appliedGeneration: sandbox.egressAppliedGeneration,
    applied: sandbox.egressAppliedGeneration >= sandbox.egressGeneration,
  };
}

/** Throws a 422 naming each invalid field when `policy` is not a valid policy, with `fields` as the request spells the lists. */
export function checkEgressPolicy(policy: EgressPolicy, fields: { allowlist: string; denylist: string }): void {
  const problems = egressPolicyProblems(policy, fields);
  if (problems.length === 0) return;
  throw new ApiError('VALIDATION_FAILED', problems.map((p) => `${p.field}: ${p.reason}`).join('; '), {
    fieldErrors: problems.map((p) => ({ param: p.field, details: p.reason })),
  });
}

/** The 422 for a driver that does not enforce egress policies; `param` names the field that asked for one. */
export function egressUnsupported(runtimeName: string, param: string): ApiError {
  const details = `the ${runtimeName} runtime driver does not enforce egress policies; only open egress or no network (an empty allow list) can be asked for`;
  return new ApiError('EGRESS_UNSUPPORTED', `${param}: ${details}`, { fieldErrors: [{ param, details }] });
}

/**
 * Throws 422 `EGRESS_UNSUPPORTED` naming the first domain entry of `policy` when the driver
 * enforces addresses and CIDRs only (`RuntimeCapabilities.egressDomains` false).
 */
export function checkEgressEntriesSupported(runtime: SandboxRuntime | null, policy: EgressPolicy, fields: { allowlist: string; denylist: string }): void {
  if (!runtime || runtime.capabilities().egressDomains !== false) return;
  for (const key of ['allowlist', 'denylist'] as const) {
    for (const [i, entry] of (policy[key] ?? []).entries()) {
      const parsed = parseEgressEntry(entry);
      if ('error' in parsed || parsed.kind !== 'domain') continue;
      const param = `${fields[key]}[${i}]`;
      const details = `${JSON.stringify(entry)} is a domain name; the ${runtime.name} runtime driver enforces egress policies on IP addresses and CIDRs only (see docs/networking.md)`;
      throw new ApiError('EGRESS_UNSUPPORTED', `${param}: ${details}`, { fieldErrors: [{ param, details }] });
    }
  }
}

/** Whether the runtime can give a sandbox created without network a network later. */
function opensNoNetwork(runtime: SandboxRuntime | null): boolean {
  return runtime !== null && enforcesEgress(runtime) && runtime.capabilities().egressOpensNoNetwork !== false;
}

/** The request field that carries the list of a policy, as `fields` spells the two lists. */
function listField(policy: EgressPolicy, fields: { allowlist: string; denylist: string }): string {
  return policy.denylist !== null ? fields.denylist : fields.allowlist;
}

/**
 * Resolves a create request's network fields to what is stored: whether the sandbox gets a network
 * interface and its normalized lists. `network_access: false` is the empty allow list; with a
 * non-empty allow list or any deny list it is a 422. Invalid lists are a 422 naming the entry.
 */
export function resolveCreateEgress(input: {
  networkAccess: boolean | null;
  networkAllowlist: string[] | null;
  networkDenylist: string[] | null;
}): { networkAccess: boolean; policy: EgressPolicy; field: string } {
  const given: EgressPolicy = { allowlist: input.networkAllowlist, denylist: input.networkDenylist };
  checkEgressPolicy(given, { allowlist: 'network_allowlist', denylist: 'network_denylist' });
  if (input.networkAccess === false) {
    if (given.denylist !== null || (given.allowlist !== null && given.allowlist.length > 0)) {
      throw ApiError.invalid('network_access', 'false means no network at all; it cannot be combined with a non-empty network_allowlist or a network_denylist');
    }
    return { networkAccess: false, policy: { allowlist: [], denylist: null }, field: 'network_access' };
  }
  const policy = normalizeEgressPolicy(given);
  return { networkAccess: !isNoEgress(policy), policy, field: listField(policy, { allowlist: 'network_allowlist', denylist: 'network_denylist' }) };
}

/**
 * The egress routes: read and replace a sandbox's policy (applied live through the runtime), and
 * read its egress log. Visibility is the sandbox service's: a sandbox the caller may not see is 404.
 */
export class EgressService {
  constructor(
    private readonly store: Store,
    private readonly sandboxes: SandboxService,
    private readonly lifecycle: SandboxLifecycle,
  ) {}

  /** The policy of a sandbox the caller may see. */
  async get(caller: Principal, id: string): Promise<EgressPolicyStatus> {
    return egressStatusOf(await this.sandboxes.get(caller, id));
  }

  /**
   * Replaces the policy (`{allowlist, denylist}`, exactly one non-null; `{allowlist: null,
   * denylist: []}` is open). On a RUNNING sandbox it is applied at once, waiting up to
   * {@link EGRESS_APPLY_WAIT_MS}; the reconciler finishes (and retries) what that did not. A
   * PENDING or PROVISIONING sandbox starts with it; another replica's sandbox gets it from that
   * replica's reconciler. An ended sandbox is a 409.
   */
  async put(caller: Principal, id: string, given: EgressPolicy): Promise<EgressPolicyStatus> {
    const sandbox = await this.sandboxes.get(caller, id);
    if (given.allowlist === null && given.denylist === null) {
      throw ApiError.invalid('allowlist', 'give exactly one of allowlist or denylist (denylist: [] for open egress, allowlist: [] for none)');
    }
    checkEgressPolicy(given, { allowlist: 'allowlist', denylist: 'denylist' });
    const policy = normalizeEgressPolicy(given);
    if (isTerminal(sandbox.status)) {
      throw new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${id} has ended (${sandbox.status}); its egress policy can no longer change`);
    }
    const runtime = this.lifecycle.runtime;
    if (!sandbox.networkAccess && !isNoEgress(policy) && !opensNoNetwork(runtime)) {
      throw new ApiError('EGRESS_NO_NETWORK', `Sandbox ${id} was created without network; its egress can only stay closed. Create a sandbox with the policy it needs`);
    }
    if (runtime && sandbox.networkAccess && !enforcesEgress(runtime) && !(isOpenEgress(policy) && isOpenEgress(egressPolicyOf(sandbox)))) {
      throw egressUnsupported(runtime.name, listField(policy, { allowlist: 'allowlist', denylist: 'denylist' }));
    }
    checkEgressEntriesSupported(runtime, policy, { allowlist: 'allowlist', denylist: 'denylist' });
    const updated = await this.store.setSandboxEgress(id, policy, ACTIVE_STATUSES);
    if (!updated) throw new ApiError('SANDBOX_NOT_RUNNING', `Sandbox ${id} has ended; its egress policy can no longer change`);
    this.lifecycle.events?.record(
      id,
      'egress.policy_changed',
      { generation: updated.egressGeneration, allowlist: policy.allowlist, denylist: policy.denylist },
      { userId: caller.user.id, keyId: caller.apiKeyId },
    );
    // Another replica's sandbox: its reconciler sees the changed row and applies it there.
    if (updated.status !== 'RUNNING' || updated.runtimeOwner !== this.lifecycle.instanceId) return egressStatusOf(updated);
    const applying = this.lifecycle.egress.apply(id);
    applying.catch(() => undefined);
    try {
      await orAfter(applying, EGRESS_APPLY_WAIT_MS, 'waited');
    } catch (error) {
      if (error instanceof RuntimeError && error.kind === 'UNSUPPORTED') throw egressUnsupported(runtime?.name ?? 'configured', listField(policy, { allowlist: 'allowlist', denylist: 'denylist' }));
      // Anything else is retried by the reconciler; the answer says `applied: false` meanwhile.
    }
    return egressStatusOf((await this.store.getSandbox(id)) ?? updated);
  }

  /** The sandbox's recent DNS answers and connection attempts, oldest first, at most `limit`. */
  async log(caller: Principal, id: string, limit: number): Promise<EgressLogEntry[]> {
    const sandbox = await this.sandboxes.get(caller, id);
    const runtime = this.lifecycle.runtime;
    if (!runtime || sandbox.runtimeId === null) return [];
    if (!enforcesEgress(runtime)) throw egressUnsupported(runtime.name, 'sandbox_id');
    try {
      return await runtime.egressLog(sandbox.runtimeId, Math.min(Math.max(1, limit), EGRESS_LOG_MAX_LIMIT));
    } catch (error) {
      if (error instanceof RuntimeError && error.kind === 'NOT_FOUND') return [];
      if (error instanceof RuntimeError && error.kind === 'UNSUPPORTED') throw egressUnsupported(runtime.name, 'sandbox_id');
      throw error;
    }
  }
}
