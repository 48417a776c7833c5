import type { FastifyInstance } from 'fastify';
import type { Static } from 'typebox';
import { type EgressPolicyStatus, EGRESS_LOG_DEFAULT_LIMIT } from '../../services/egress-service.js';
import { type AppServices, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, ErrorBody, SandboxIdParams } from '../schemas/common.js';
import { EgressLogQuery, EgressLogResponse, EgressPolicyBody, EgressPolicyStatusResponse } from '../schemas/egress-schemas.js';

const tags = ['Sandbox'];
type IdParams = { Params: { sandbox_id: string } };

/** The wire shape of a policy status (snake_case, as the Prime SDK reads it). */
function toStatusResponse(status: EgressPolicyStatus): Static<typeof EgressPolicyStatusResponse> {
  return { policy: status.policy, generation: status.generation, applied_generation: status.appliedGeneration, applied: status.applied };
}

/** A sandbox's egress policy (`GET`/`PUT …/egress-policy`) and Corral's egress log (`GET …/egress-log`). */
export function registerEgressRoutes(app: FastifyInstance, { egress }: AppServices): void {
  app.get<IdParams>(
    '/sandbox/:sandbox_id/egress-policy',
    {
      config: { rateLimit: 'sandbox.egressPolicy.get' },
      schema: { tags, summary: 'Get Sandbox Egress Policy', params: SandboxIdParams, response: { 200: EgressPolicyStatusResponse, ...ERROR_RESPONSES } },
    },
    async (request) => toStatusResponse(await egress.get(principalOf(request), request.params.sandbox_id)),
  );

  app.put<IdParams & { Body: EgressPolicyBody }>(
    '/sandbox/:sandbox_id/egress-policy',
    {
      config: { rateLimit: 'sandbox.egressPolicy.set' },
      schema: {
        tags,
        summary: 'Set Sandbox Egress Policy',
        description: 'Replaces the policy; a running sandbox follows it within a second (`applied` says when it does).',
        params: SandboxIdParams,
        body: EgressPolicyBody,
        response: { 200: EgressPolicyStatusResponse, 409: ErrorBody, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const b = request.body;
      return toStatusResponse(await egress.put(principalOf(request), request.params.sandbox_id, { allowlist: b.allowlist ?? null, denylist: b.denylist ?? null }));
    },
  );

  app.get<IdParams & { Querystring: EgressLogQuery }>(
    '/sandbox/:sandbox_id/egress-log',
    {
      config: { rateLimit: 'sandbox.egressLog' },
      schema: {
        tags,
        summary: 'Get Sandbox Egress Log',
        description: "Corral's own: recent DNS answers and allowed/denied connection attempts, oldest first.",
        params: SandboxIdParams,
        querystring: EgressLogQuery,
        response: { 200: EgressLogResponse, ...ERROR_RESPONSES },
      },
    },
    async (request) => ({ entries: await egress.log(principalOf(request), request.params.sandbox_id, request.query.limit ?? EGRESS_LOG_DEFAULT_LIMIT) }),
  );
}
