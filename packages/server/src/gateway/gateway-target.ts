import type { SandboxAccess, SandboxHandle, TokenDenial } from '../services/sandbox-access.js';
import { GatewayError, sandboxNotFound, unauthorized } from '../errors/gateway-error.js';
import type { GatewayGrant } from './live-grants.js';

/** The sandbox a gateway request acts on, once its token and state have been checked. */
export interface GatewayTarget extends SandboxHandle {
  /** The access the token was issued with; open work is cut when it is taken away (`LiveGrants`). */
  grant: GatewayGrant;
}

/** What the gateway answers (401) for each way a token can fail. */
const DENIALS: Record<TokenDenial, string> = {
  'missing-token': 'Missing gateway token: send "Authorization: Bearer <token>" from POST /api/v1/sandbox/{id}/auth',
  'invalid-token': 'Invalid or expired gateway token; request a new one from POST /api/v1/sandbox/{id}/auth',
  'other-sandbox': 'This gateway token is for another sandbox',
  'other-namespace': 'This gateway token is for another user namespace',
  revoked: 'The access this gateway token was issued with has been revoked; request a new token with a valid API key',
};

/** The token in an `Authorization: Bearer <token>` header, if any. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
}

/**
 * Checks a gateway request and finds its sandbox.
 *
 * - 401 unless the token verifies, is unexpired, names this sandbox (`sid` = `job_id`), and
 *   `user_ns` is the token's user or the sandbox's owner (`/auth` answers with the owner's id
 *   as `user_ns`, while the token carries the caller's id, e.g. a team member's); and unless
 *   the API key it was issued through is still unrevoked, its user still exists and may still
 *   see the sandbox (re-checked on use, cached for a second or two by `AccessChecker`).
 * - 409 while the sandbox is PENDING, PROVISIONING or PAUSED: Prime's SDK retries while the
 *   sandbox's status says RUNNING.
 * - 502 `sandbox_not_found` when it has ended, is missing, or has no container.
 */
export async function resolveTarget(access: SandboxAccess, userNs: string, jobId: string, token: string | undefined): Promise<GatewayTarget> {
  const resolved = await access.forGatewayToken(userNs, jobId, token);
  if (!resolved.ok) throw unauthorized(DENIALS[resolved.denied]);
  const state = resolved.state;
  switch (state.kind) {
    case 'missing':
      throw sandboxNotFound(jobId, `Sandbox ${jobId} not found`);
    case 'not-running':
      throw new GatewayError('sandbox_not_ready', `Sandbox ${jobId} is ${state.status}, not RUNNING yet`, { sandboxId: jobId, status: state.status });
    case 'ended':
      throw sandboxNotFound(jobId, `Sandbox ${jobId} is no longer running (${state.status})`);
    case 'no-container':
      throw sandboxNotFound(jobId, `Sandbox ${jobId} has no container`);
    case 'no-runtime':
      throw new GatewayError('gateway_error', 'This server has no runtime driver to reach sandboxes');
    case 'running':
      return { ...state.handle, grant: resolved.grant };
  }
}
