import type { EgressPolicyChange, EgressPolicyStatus } from '@corral/sdk';
import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

export interface NetworkOptions {
  allow?: string[];
  deny?: string[];
  open?: boolean;
  none?: boolean;
}

/** The change the flags ask for, or undefined to show the policy; throws on flags that contradict each other. */
export function networkChange(options: NetworkOptions): EgressPolicyChange | undefined {
  const given = [options.allow !== undefined, options.deny !== undefined, options.open === true, options.none === true].filter(Boolean).length;
  if (given > 1) throw new Error('give one of --allow, --deny, --open or --none');
  if (options.allow) return { allow: options.allow };
  if (options.deny) return { deny: options.deny };
  if (options.open) return { deny: [] };
  if (options.none) return { allow: [] };
  return undefined;
}

/** A policy in words: `allow: a, b`, `deny: c`, `open`, `none (no egress)`. */
export function describePolicy(policy: EgressPolicyStatus['policy']): string {
  if (policy.allowlist !== null) return policy.allowlist.length === 0 ? 'none (no egress)' : `allow ${policy.allowlist.join(', ')}`;
  if (policy.denylist !== null && policy.denylist.length > 0) return `deny ${policy.denylist.join(', ')}`;
  return 'open';
}

/**
 * `corral sandbox network ID [--allow E… | --deny E… | --open | --none]`: shows the egress policy,
 * or replaces it (live; the sandbox follows within a second).
 */
export async function showOrSetNetwork(id: string, options: NetworkOptions, globals: GlobalOptions): Promise<void> {
  const client = clientFor(globals);
  const change = networkChange(options);
  const status = change ? await client.setEgressPolicy(id, change) : await client.getEgressPolicy(id);
  const state = status.applied ? 'applied' : `applying (enforced: generation ${status.applied_generation})`;
  printResult(globals.output, status, [{ policy: describePolicy(status.policy), generation: status.generation, state }], ['policy', 'generation', 'state']);
}
