import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type, { type Static } from 'typebox';
import { ApiError } from '../../errors/api-error.js';
import type { TunnelRecord } from '../../records/network-records.js';
import { effectiveStatus } from '../../network/tunnel-hub.js';
import { type AppServices, principalOf } from '../app-services.js';
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
 * Reverse-tunnel routes (docs/networking.md). Creating a tunnel returns the secrets a client
 * binds with; `corral tunnel start` then holds a WebSocket to `/api/v1/tunnel/{id}/connect` (which
 * the network service's router takes) and the tunnel is served at `http://<tunnel_id>.<proxy domain>`.
 */
export function registerTunnelRoutes(app: FastifyInstance, services: Pick<AppServices, 'config' | 'network'>): void {
  const { config, network } = services;

  const statusView = (t: TunnelRecord, request: FastifyRequest) => ({
    tunnel_id: t.id,
    name: t.name,
    status: effectiveStatus(t),
    hostname: new URL(network.hostUrl(t.id, request.host)).host,
    url: network.hostUrl(t.id, request.host),
    created_at: t.createdAt,
    connected_at: t.connectedAt,
    expires_at: t.expiresAt,
    user_id: t.userId,
    team_id: t.teamId,
    local_port: t.localPort,
    labels: t.labels,
    http_user: t.httpUser,
    terminated_at: t.terminatedAt,
  });

  app.post<{ Body: Static<typeof CreateTunnelBody> }>(
    '/tunnel',
    {
      config: { rateLimit: 'tunnel.create' },
      schema: { tags, summary: 'Create Tunnel', body: CreateTunnelBody, response: { 201: TunnelResponse, ...ERROR_RESPONSES, 501: ErrorBody } },
    },
    async (request, reply) => {
      const caller = principalOf(request);
      const body = request.body;
      const teamId = body.teamId ?? null;
      if (teamId && !caller.teams.has(teamId)) throw ApiError.invalid('teamId', `you are not a member of team ${teamId}`);
      const created = await network.tunnels.create(
        caller,
        { name: body.name ?? null, localPort: body.local_port ?? 8765, teamId, labels: body.labels ?? [], httpUser: body.http_user ?? null },
        config.tunnelTtlSeconds,
        config.maxTunnelsPerUser,
      );
      const url = network.hostUrl(created.tunnel.id, request.host);
      const base = (config.publicUrl ?? `http://${request.host}`).replace(/\/+$/, '');
      const api = new URL(base);
      reply.code(201);
      return {
        tunnel_id: created.tunnel.id,
        hostname: new URL(url).host,
        url,
        frp_token: created.frpToken,
        binding_secret: created.bindingSecret,
        server_host: api.hostname,
        server_port: Number(api.port || (api.protocol === 'https:' ? 443 : 80)),
        expires_at: created.tunnel.expiresAt,
        name: created.tunnel.name,
        local_port: created.tunnel.localPort,
        labels: created.tunnel.labels,
        http_user: created.tunnel.httpUser,
        http_password: created.httpPassword,
        connect_url: `${base.replace(/^http/, 'ws')}/api/v1/tunnel/${created.tunnel.id}/connect`,
      };
    },
  );

  app.get<{ Querystring: Static<typeof ListTunnelsQuery> }>(
    '/tunnel',
    {
      config: { rateLimit: 'tunnel.list' },
      schema: { tags, summary: 'List Tunnels', querystring: ListTunnelsQuery, response: { 200: TunnelListResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const caller = principalOf(request);
      const { teamId, status, labels } = request.query;
      const page = request.query.page ?? 1;
      const perPage = request.query.perPage ?? 50;
      if (teamId && !caller.teams.has(teamId)) throw new ApiError('FORBIDDEN', `You are not a member of team ${teamId}`);
      const result = await network.tunnels.list(
        { ...(teamId ? { teamId } : { userId: caller.user.id }), ...(status ? { status } : {}), ...(labels ? { labels } : {}) },
        page,
        perPage,
      );
      return {
        tunnels: result.tunnels.map((t) => statusView(t, request)),
        total: result.total,
        page,
        per_page: perPage,
        has_next: page * perPage < result.total,
      };
    },
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
      const caller = principalOf(request);
      const ids = [...new Set(request.body.tunnel_ids)];
      const succeeded: string[] = [];
      const failed: Array<Record<string, string>> = [];
      for (const id of ids) {
        try {
          await network.tunnels.delete(caller, id);
          succeeded.push(id);
        } catch (error) {
          if (!(error instanceof ApiError)) throw error;
          failed.push({ tunnel_id: id, error: 'Tunnel not found' });
        }
      }
      return { succeeded, failed, message: `Deleted ${succeeded.length} tunnel(s), ${failed.length} failed` };
    },
  );

  app.get<{ Params: Static<typeof TunnelIdParams> }>(
    '/tunnel/:tunnel_id',
    {
      config: { rateLimit: 'tunnel.get' },
      schema: { tags, summary: 'Get Tunnel', params: TunnelIdParams, response: { 200: TunnelStatusResponse, ...ERROR_RESPONSES } },
    },
    async (request) => statusView(await network.tunnels.get(principalOf(request), request.params.tunnel_id), request),
  );

  app.delete<{ Params: Static<typeof TunnelIdParams> }>(
    '/tunnel/:tunnel_id',
    {
      config: { rateLimit: 'tunnel.delete' },
      schema: { tags, summary: 'Delete Tunnel', params: TunnelIdParams, response: { 200: SuccessResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      await network.tunnels.delete(principalOf(request), request.params.tunnel_id);
      return { success: true, message: `Tunnel ${request.params.tunnel_id} deleted` };
    },
  );
}
