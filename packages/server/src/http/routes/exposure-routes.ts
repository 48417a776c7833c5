import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import { ApiError } from '../../errors/api-error.js';
import { type AppServices, principalOf } from '../app.js';
import { ERROR_RESPONSES, ErrorBody, SandboxIdParams, SuccessResponse } from '../schemas/common.js';
import {
  CreateSshSessionBody,
  ExposePortBody,
  ExposePortResponse,
  ListExposedPortsResponse,
  SshSessionResponse,
} from '../schemas/network-schemas.js';

const tags = ['Sandbox'];
const NOT_IMPLEMENTED = { 501: ErrorBody };

function notYet(feature: string): never {
  throw new ApiError('NOT_IMPLEMENTED', `${feature} is not available on this Corral server yet`);
}

/**
 * Port exposure and SSH-session routes. They validate, check ownership and count rate limits;
 * the data paths behind them are not served yet and answer 501.
 */
export function registerExposureRoutes(app: FastifyInstance, { sandboxes }: AppServices): void {
  app.post<{ Params: { sandbox_id: string }; Body: ExposePortBody }>(
    '/sandbox/:sandbox_id/expose',
    {
      config: { rateLimit: 'expose.create' },
      schema: {
        tags,
        summary: 'Expose Port Endpoint',
        params: SandboxIdParams,
        body: ExposePortBody,
        response: { 200: ExposePortResponse, ...ERROR_RESPONSES, ...NOT_IMPLEMENTED },
      },
    },
    async (request) => {
      await sandboxes.get(principalOf(request), request.params.sandbox_id);
      return notYet('Port exposure');
    },
  );

  app.get<{ Params: { sandbox_id: string } }>(
    '/sandbox/:sandbox_id/expose',
    {
      config: { rateLimit: 'expose.list' },
      schema: { tags, summary: 'List Exposed Ports Endpoint', params: SandboxIdParams, response: { 200: ListExposedPortsResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      await sandboxes.get(principalOf(request), request.params.sandbox_id);
      return { exposures: [] };
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
      await sandboxes.get(principalOf(request), request.params.sandbox_id);
      throw new ApiError('EXPOSURE_NOT_FOUND', `Exposure ${request.params.exposure_id} not found`);
    },
  );

  app.get(
    '/sandbox/expose/all',
    {
      config: { rateLimit: 'expose.listAll' },
      schema: { tags, summary: 'List All Exposed Ports Endpoint', response: { 200: ListExposedPortsResponse, ...ERROR_RESPONSES } },
    },
    async () => ({ exposures: [] }),
  );

  app.post<{ Params: { sandbox_id: string }; Body: CreateSshSessionBody | undefined }>(
    '/sandbox/:sandbox_id/ssh-session',
    {
      config: { rateLimit: 'ssh.create' },
      schema: {
        tags,
        summary: 'Create SSH Session Endpoint',
        params: SandboxIdParams,
        body: Type.Union([CreateSshSessionBody, Type.Null()]),
        response: { 200: SshSessionResponse, ...ERROR_RESPONSES, ...NOT_IMPLEMENTED },
      },
    },
    async (request) => {
      await sandboxes.get(principalOf(request), request.params.sandbox_id);
      return notYet('SSH sessions');
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
      await sandboxes.get(principalOf(request), request.params.sandbox_id);
      throw new ApiError('SSH_SESSION_NOT_FOUND', `SSH session ${request.params.session_id} not found`);
    },
  );
}
