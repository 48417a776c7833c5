import type { FastifyInstance } from 'fastify';
import { type AppServices, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, ErrorBody, SandboxIdParams } from '../schemas/common.js';
import { toSandboxResponse } from '../sandbox-mapper.js';
import { AuthResponse, ErrorContextResponse, LogsResponse, SandboxResponse } from '../schemas/sandbox-schemas.js';

const tags = ['Sandbox'];
type IdParams = { Params: { sandbox_id: string } };

/** Logs, error context, gateway authorization, pause and resume of one sandbox. */
export function registerSandboxActionRoutes(app: FastifyInstance, { sandboxes, config }: AppServices): void {
  // Corral's extensions (Prime has the PAUSED status but no endpoint for it): docs/checkpoints.md.
  app.post<IdParams>(
    '/sandbox/:sandbox_id/pause',
    {
      config: { rateLimit: 'sandbox.pause' },
      schema: { tags, summary: 'Pause Sandbox (Corral)', params: SandboxIdParams, response: { 200: SandboxResponse, 409: ErrorBody, ...ERROR_RESPONSES } },
    },
    async (request) => toSandboxResponse(await sandboxes.pause(principalOf(request), request.params.sandbox_id)),
  );

  app.post<IdParams>(
    '/sandbox/:sandbox_id/resume',
    {
      config: { rateLimit: 'sandbox.pause' },
      schema: { tags, summary: 'Resume Sandbox (Corral)', params: SandboxIdParams, response: { 200: SandboxResponse, 409: ErrorBody, ...ERROR_RESPONSES } },
    },
    async (request) => toSandboxResponse(await sandboxes.resume(principalOf(request), request.params.sandbox_id)),
  );

  app.get<IdParams>(
    '/sandbox/:sandbox_id/logs',
    {
      config: { rateLimit: 'sandbox.logs' },
      schema: { tags, summary: 'Get Sandbox Logs Endpoint', params: SandboxIdParams, response: { 200: LogsResponse, ...ERROR_RESPONSES } },
    },
    async (request) => ({ logs: await sandboxes.logs(principalOf(request), request.params.sandbox_id) }),
  );

  app.get<IdParams>(
    '/sandbox/:sandbox_id/error-context',
    {
      config: { rateLimit: 'sandbox.errorContext' },
      schema: {
        tags,
        summary: 'Get Sandbox Error Context Endpoint',
        params: SandboxIdParams,
        response: { 200: ErrorContextResponse, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const s = await sandboxes.get(principalOf(request), request.params.sandbox_id);
      return { status: s.status, errorType: s.errorType, errorMessage: s.errorMessage };
    },
  );

  app.post<IdParams>(
    '/sandbox/:sandbox_id/auth',
    {
      config: { rateLimit: 'sandbox.auth' },
      schema: { tags, summary: 'Get Sandbox Auth Token', params: SandboxIdParams, response: { 200: AuthResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const { token, expiresAt, sandbox } = await sandboxes.authorize(principalOf(request), request.params.sandbox_id);
      const base = (config.publicUrl ?? `http://${request.host}`).replace(/\/+$/, '');
      return {
        token,
        gateway_url: `${base}/gateway`,
        user_ns: sandbox.userId,
        job_id: sandbox.id,
        expires_at: expiresAt.toISOString(),
      };
    },
  );
}
