import type { FastifyInstance } from 'fastify';
import { type AppServices, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, SandboxIdParams } from '../schemas/common.js';
import { AuthResponse, ErrorContextResponse, LogsResponse } from '../schemas/sandbox-schemas.js';

const tags = ['Sandbox'];
type IdParams = { Params: { sandbox_id: string } };

/** Logs, error context and gateway authorization of one sandbox. */
export function registerSandboxActionRoutes(app: FastifyInstance, { sandboxes, config }: AppServices): void {
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
