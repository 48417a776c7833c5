import type { GetEgressLogResponse, GetEgressPolicyResponse, SetEgressPolicyRequest } from './generated/api.js';

/**
 * A new egress policy, replacing the old one:
 * - `{ allow: [...] }`: only these domains (`*.` leftmost wildcards), IPs and CIDRs are reachable;
 *   `{ allow: [] }` is no egress at all;
 * - `{ deny: [...] }`: everything but these is reachable; `{ deny: [] }` is open egress.
 */
export type EgressPolicyChange = { allow: string[] } | { deny: string[] };

/** A sandbox's egress policy and whether its runtime enforces it yet (Prime's `EgressPolicyStatus`). */
export type EgressPolicyStatus = GetEgressPolicyResponse;

/** One line of a sandbox's egress log: a DNS answer or a connection attempt, with its verdict. */
export type EgressLogEntry = GetEgressLogResponse['entries'][number];

/** Options of `egressLog`. */
export interface EgressLogOptions {
  /** At most this many entries, the newest (1..1000). Default: the server's (100). */
  limit?: number;
}

/** The `PUT …/egress-policy` body for a change. */
export function egressPolicyBody(change: EgressPolicyChange): SetEgressPolicyRequest {
  return 'allow' in change ? { allowlist: change.allow, denylist: null } : { allowlist: null, denylist: change.deny };
}
