import type { GatewayServices } from '../http/app.js';
import type { SandboxRuntime } from '../runtime/runtime.js';
import { GatewayError, sandboxNotFound, unauthorized } from './gateway-error.js';
import type { GatewayGrant } from './live-grants.js';

/** The sandbox a gateway request acts on, once its token and state have been checked. */
export interface GatewayTarget {
  sandboxId: string;
  userId: string;
  runtimeId: string;
  runtime: SandboxRuntime;
  /** The access the token was issued with; open work is cut when it is taken away (`LiveGrants`). */
  grant: GatewayGrant;
}

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
export async function resolveTarget(
  services: GatewayServices,
  userNs: string,
  jobId: string,
  token: string | undefined,
): Promise<GatewayTarget> {
  if (!token) throw unauthorized('Missing gateway token: send "Authorization: Bearer <token>" from POST /api/v1/sandbox/{id}/auth');
  const claims = services.tokens.verify(token);
  if (!claims) throw unauthorized('Invalid or expired gateway token; request a new one from POST /api/v1/sandbox/{id}/auth');
  if (claims.sid !== jobId) throw unauthorized('This gateway token is for another sandbox');
  const sandbox = await services.store.getSandbox(jobId);
  if (!sandbox) throw sandboxNotFound(jobId, `Sandbox ${jobId} not found`);
  if (userNs !== claims.uid && userNs !== sandbox.userId) throw unauthorized('This gateway token is for another user namespace');
  if (!(await services.access.maySee(claims.kid, sandbox, claims.uid))) {
    throw unauthorized('The access this gateway token was issued with has been revoked; request a new token with a valid API key');
  }
  switch (sandbox.status) {
    case 'PENDING':
    case 'PROVISIONING':
    case 'PAUSED':
      throw new GatewayError('sandbox_not_ready', `Sandbox ${jobId} is ${sandbox.status}, not RUNNING yet`, {
        sandboxId: jobId,
        status: sandbox.status,
      });
    case 'RUNNING':
      break;
    default:
      throw sandboxNotFound(jobId, `Sandbox ${jobId} is no longer running (${sandbox.status})`);
  }
  if (!sandbox.runtimeId) throw sandboxNotFound(jobId, `Sandbox ${jobId} has no container`);
  if (!services.runtime) throw new GatewayError('gateway_error', 'This server has no runtime driver to reach sandboxes');
  return {
    sandboxId: sandbox.id,
    userId: sandbox.userId,
    runtimeId: sandbox.runtimeId,
    runtime: services.runtime,
    grant: { keyId: claims.kid, callerId: claims.uid, sandboxId: sandbox.id },
  };
}
