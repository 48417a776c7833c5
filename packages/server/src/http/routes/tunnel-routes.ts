import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { ApiError } from '../../errors/api-error.js';
import { principalOf } from '../app.js';
import { ERROR_RESPONSES, ErrorBody, SuccessResponse } from '../schemas/common.js';
import {
  BulkDeleteTunnelBody,
  CreateTunnelBody,
  ListTunnelsQuery,
  TunnelListResponse,
  TunnelResponse,
  TunnelStatusResponse,
} from '../schemas/network-schemas.js';

const tags = ['Tunnel'];
const TunnelIdParams = Type.Object({ tunnel_id: Type.String({ minLength: 1, maxLength: 128 }) });

/**
 * Reverse-tunnel routes. They validate and count rate limits; the tunnel relay is not served
 * yet, so creation answers 501 and there are never any tunnels to read or delete.
 */
export function registerTunnelRoutes(app: FastifyInstance): void {
  app.post<{ Body: Static<typeof CreateTunnelBody> }>(
    '/tunnel',
    {
      config: { rateLimit: 'tunnel.create' },
      schema: { tags, summary: 'Create Tunnel', body: CreateTunnelBody, response: { 201: TunnelResponse, ...ERROR_RESPONSES, 501: ErrorBody } },
    },
    async (request) => {
      const teamId = request.body.teamId;
      if (teamId && !principalOf(request).teams.has(teamId)) throw ApiError.invalid('teamId', `you are not a member of team ${teamId}`);
      throw new ApiError('NOT_IMPLEMENTED', 'Tunnels are not available on this Corral server yet');
    },
  );

  app.get<{ Querystring: Static<typeof ListTunnelsQuery> }>(
    '/tunnel',
    {
      config: { rateLimit: 'tunnel.list' },
      schema: { tags, summary: 'List Tunnels', querystring: ListTunnelsQuery, response: { 200: TunnelListResponse, ...ERROR_RESPONSES } },
    },
    async () => ({ tunnels: [], total: 0 }),
  );

  app.delete<{ Body: Static<typeof BulkDeleteTunnelBody> }>(
    '/tunnel',
    {
      config: { rateLimit: 'tunnel.bulkDelete' },
      schema: {
        tags,
        summary: 'Bulk Delete Tunnels',
        body: BulkDeleteTunnelBody,
        response: {
          200: Type.Object({
            succeeded: Type.Array(Type.String()),
            failed: Type.Array(Type.Record(Type.String(), Type.String())),
            message: Type.String(),
          }),
          ...ERROR_RESPONSES,
        },
      },
    },
    async (request) => {
      const ids = [...new Set(request.body.tunnel_ids)];
      return {
        succeeded: [],
        failed: ids.map((id) => ({ tunnel_id: id, error: 'Tunnel not found' })),
        message: `Deleted 0 tunnel(s), ${ids.length} failed`,
      };
    },
  );

  app.get<{ Params: Static<typeof TunnelIdParams> }>(
    '/tunnel/:tunnel_id',
    {
      config: { rateLimit: 'tunnel.get' },
      schema: { tags, summary: 'Get Tunnel', params: TunnelIdParams, response: { 200: TunnelStatusResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      throw new ApiError('TUNNEL_NOT_FOUND', `Tunnel ${request.params.tunnel_id} not found`);
    },
  );

  app.delete<{ Params: Static<typeof TunnelIdParams> }>(
    '/tunnel/:tunnel_id',
    {
      config: { rateLimit: 'tunnel.delete' },
      schema: { tags, summary: 'Delete Tunnel', params: TunnelIdParams, response: { 200: SuccessResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      throw new ApiError('TUNNEL_NOT_FOUND', `Tunnel ${request.params.tunnel_id} not found`);
    },
  );
}
