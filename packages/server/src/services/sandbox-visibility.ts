import type { TeamRole } from '../records/account-records.js';
import type { SandboxRecord } from '../records/sandbox-records.js';

/**
 * Whether a user with these team roles may see and act on a sandbox: its owner, or an admin of
 * the sandbox's team. The control plane and every re-check of data-plane access use this one rule.
 */
export function maySeeSandbox(userId: string, teams: ReadonlyMap<string, TeamRole>, sandbox: Pick<SandboxRecord, 'userId' | 'teamId'>): boolean {
  return sandbox.userId === userId || (sandbox.teamId !== null && teams.get(sandbox.teamId) === 'admin');
}
