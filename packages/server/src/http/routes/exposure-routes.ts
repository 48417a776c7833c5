import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import { type AppServices, actorOfPrincipal, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, SandboxIdParams, SuccessResponse } from '../schemas/common.js';
import {
  CreateSshSessionBody,
  ExposePortBody,
  ExposePortResponse,
  ListExposedPortsResponse,
  SshSessionResponse,
} from '../schemas/network-schemas.js';

const tags = ['Sandbox'];

/** The absolute base URL of this server as the client sees it. */
function baseUrl(services: Pick<AppServices, 'config'>, request: FastifyRequest): string {
  return (services.config.publicUrl ?? `http://${request.host}`).replace(/\/+$/, '');
}

/**
 * Port exposure and SSH-session routes: they validate, check ownership, count rate limits and
 * hand over to the NetworkService (docs/networking.md).
 */
export function registerExposureRoutes(app: FastifyInstance, services: Pick<AppServices, 'config' | 'sandboxes' | 'network'>): void {
  const { sandboxes, network } = services;

  app.post<{ Params: { sandbox_id: string }; Body: ExposePortBody }>(
    '/sandbox/:sandbox_id/expose',
    {
      config: { rateLimit: 'expose.create' },
      schema: {
        tags,
        summary: 'Expose Port Endpoint',
        params: SandboxIdParams,
        body: ExposePortBody,
        response: { 200: ExposePortResponse, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const sandbox = await sandboxes.get(principalOf(request), request.params.sandbox_id);
      const body = request.body;
      return network.expose(
        sandbox,
        { port: body.port, name: body.name ?? null, protocol: body.protocol ?? 'HTTP', auth: body.auth ?? 'none' },
        baseUrl(services, request),
        actorOfPrincipal(principalOf(request)),
      );
    },
  );

  app.get<{ Params: { sandbox_id: string } }>(
    '/sandbox/:sandbox_id/expose',
    {
      config: { rateLimit: 'expose.list' },
      schema: { tags, summary: 'List Exposed Ports Endpoint', params: SandboxIdParams, response: { 200: ListExposedPortsResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const sandbox = await sandboxes.get(principalOf(request), request.params.sandbox_id);
      return { exposures: await network.list([sandbox.id], baseUrl(services, request)) };
    },
  );

  app.delete<{ Params: { sandbox_id: string; exposure_id: string } }>(
    '/sandbox/:sandbox_id/expose/:exposure_id',
    {
      config: { rateLimit: 'expose.delete' },
      schema: {
        tags,
        summary: 'Unexpose Port Endpoint',
        params: Type.Object({ sandbox_id: Type.String({ minLength: 1, maxLength: 128 }), exposure_id: Type.String({ minLength: 1, maxLength: 128 }) }),
        response: { 200: SuccessResponse, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const sandbox = await sandboxes.get(principalOf(request), request.params.sandbox_id);
      await network.unexpose(sandbox.id, request.params.exposure_id, actorOfPrincipal(principalOf(request)));
      return { success: true, message: `Exposure ${request.params.exposure_id} removed` };
    },
  );

  app.get(
    '/sandbox/expose/all',
    {
      config: { rateLimit: 'expose.listAll' },
      schema: { tags, summary: 'List All Exposed Ports Endpoint', response: { 200: ListExposedPortsResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const caller = principalOf(request);
      return { exposures: await network.list(await sandboxes.activeIdsOf(caller.user.id), baseUrl(services, request)) };
    },
  );

  app.post<{ Params: { sandbox_id: string }; Body: CreateSshSessionBody | null | undefined }>(
    '/sandbox/:sandbox_id/ssh-session',
    {
      config: { rateLimit: 'ssh.create' },
      schema: {
        tags,
        summary: 'Create SSH Session Endpoint',
        params: SandboxIdParams,
        body: Type.Union([CreateSshSessionBody, Type.Null()]),
        response: { 200: SshSessionResponse, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const caller = principalOf(request);
      const sandbox = await sandboxes.get(caller, request.params.sandbox_id);
      return network.createSshSession(caller, sandbox, request.body?.ttl_seconds ?? 900, baseUrl(services, request));
    },
  );

  app.delete<{ Params: { sandbox_id: string; session_id: string } }>(
    '/sandbox/:sandbox_id/ssh-session/:session_id',
    {
      config: { rateLimit: 'ssh.delete' },
      schema: {
        tags,
        summary: 'Close SSH Session Endpoint',
        params: Type.Object({ sandbox_id: Type.String({ minLength: 1, maxLength: 128 }), session_id: Type.String({ minLength: 1, maxLength: 128 }) }),
        response: { 200: SuccessResponse, ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const sandbox = await sandboxes.get(principalOf(request), request.params.sandbox_id);
      await network.closeSshSession(sandbox.id, request.params.session_id, actorOfPrincipal(principalOf(request)));
      return { success: true, message: `SSH session ${request.params.session_id} closed` };
    },
  );
}
