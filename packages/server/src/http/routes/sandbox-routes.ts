import type { FastifyInstance } from 'fastify';
import { ApiError } from '../../errors/api-error.js';
import { CREATE_WAIT_HEADER, requestedCreateWait } from '../../services/create-hold.js';
import type { SandboxStatus } from '../../records/sandbox-records.js';
import type { CreateSandboxInput } from '../../services/sandbox-service.js';
import { type AppServices, principalOf } from '../app-services.js';
import { toSandboxResponse } from '../sandbox-mapper.js';
import { ERROR_RESPONSES, SandboxIdParams, SuccessResponse } from '../schemas/common.js';
import {
  BatchStatusBody,
  BatchStatusResponse,
  BulkDeleteBody,
  BulkDeleteResponse,
  CreateSandboxBody,
  ListSandboxesQuery,
  SandboxListResponse,
  SandboxResponse,
  UpdateSandboxBody,
} from '../schemas/sandbox-schemas.js';

const tags = ['Sandbox'];

/** The create fields of a request body (of `POST /sandbox`, or of a fork), with Prime's defaults. */
export function createInputOf(b: Omit<CreateSandboxBody, 'name' | 'checkpoint_id'> & { name?: string }, defaultName = 'sandbox'): Omit<CreateSandboxInput, 'checkpointId'> {
  return {
    name: b.name ?? defaultName,
    dockerImage: b.docker_image ?? null,
    startCommand: b.start_command ?? null,
    cpuCores: b.cpu_cores ?? 1,
    memoryGb: b.memory_gb ?? 2,
    diskSizeGb: b.disk_size_gb ?? null,
    gpuCount: b.gpu_count ?? 0,
    gpuType: b.gpu_type ?? null,
    vm: b.vm ?? false,
    networkAccess: b.network_access ?? null,
    networkAllowlist: b.network_allowlist ?? null,
    networkDenylist: b.network_denylist ?? null,
    timeoutMinutes: b.timeout_minutes ?? 60,
    idleTimeoutMinutes: b.idle_timeout_minutes ?? null,
    environmentVars: b.environment_vars ?? null,
    secrets: b.secrets ?? null,
    labels: b.labels ?? [],
    teamId: b.team_id ?? null,
    region: b.region ?? null,
    advancedConfigs: (b.advanced_configs as Record<string, unknown> | null | undefined) ?? null,
    registryCredentialsId: b.registry_credentials_id ?? null,
    guaranteed: b.guaranteed ?? false,
    idempotencyKey: b.idempotency_key ?? null,
    admissionTimeoutSeconds: b.admission_timeout_seconds ?? null,
  };
}

/** Sandbox CRUD, listing, bulk delete and batch status: `/api/v1/sandbox…`. */
export function registerSandboxRoutes(app: FastifyInstance, { sandboxes, createHold }: AppServices): void {
  app.post<{ Body: CreateSandboxBody }>(
    '/sandbox',
    {
      config: { rateLimit: 'sandbox.create' },
      schema: { tags, summary: 'Create Sandbox Endpoint', body: CreateSandboxBody, response: { 201: SandboxResponse, ...ERROR_RESPONSES } },
    },
    async (request, reply) => {
      const b = request.body;
      const wait = requestedCreateWait(request.headers[CREATE_WAIT_HEADER]);
      if (wait.error !== undefined) throw ApiError.invalid(CREATE_WAIT_HEADER, wait.error);
      const created = await sandboxes.create(principalOf(request), { ...createInputOf(b), checkpointId: b.checkpoint_id ?? null });
      // Held while it provisions (bounded); a client that goes away ends the hold, never the provisioning.
      const left = new AbortController();
      const onClose = (): void => left.abort();
      reply.raw.once('close', onClose);
      try {
        const sandbox = await createHold.settle(created, { ...(wait.ms !== undefined ? { requestedMs: wait.ms } : {}), signal: left.signal });
        reply.code(201);
        return toSandboxResponse(sandbox);
      } finally {
        reply.raw.off('close', onClose);
      }
    },
  );

  app.get<{ Querystring: ListSandboxesQuery }>(
    '/sandbox',
    {
      config: { rateLimit: 'sandbox.list' },
      schema: { tags, summary: 'List Sandboxes', querystring: ListSandboxesQuery, response: { 200: SandboxListResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const q = request.query;
      const page = q.page ?? 1;
      const perPage = q.per_page ?? 50;
      const { sandboxes: rows, total } = await sandboxes.list(principalOf(request), {
        page,
        perPage,
        ...(q.team_id !== undefined ? { teamId: q.team_id } : {}),
        ...(q.user_id !== undefined ? { userId: q.user_id } : {}),
        ...(q.status !== undefined ? { status: q.status as SandboxStatus } : {}),
        ...(q.is_active !== undefined ? { isActive: q.is_active } : {}),
        ...(q.labels !== undefined ? { labels: q.labels } : {}),
      });
      return { sandboxes: rows.map(toSandboxResponse), total, page, per_page: perPage, has_next: page * perPage < total };
    },
  );

  app.delete<{ Body: BulkDeleteBody }>(
    '/sandbox',
    {
      config: { rateLimit: 'sandbox.bulkDelete' },
      schema: { tags, summary: 'Bulk Delete Sandboxes', body: BulkDeleteBody, response: { 200: BulkDeleteResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const b = request.body;
      const { succeeded, failed } = await sandboxes.bulkDelete(principalOf(request), {
        sandboxIds: b.sandbox_ids ?? null,
        labels: b.labels ?? null,
        teamId: b.team_id ?? null,
        userId: b.user_id ?? null,
        allUsers: b.all_users ?? false,
      });
      return { succeeded, failed, message: `Deleted ${succeeded.length} sandbox(es), ${failed.length} failed` };
    },
  );

  app.post<{ Body: BatchStatusBody }>(
    '/sandbox/status::batchGet',
    {
      config: { rateLimit: 'sandbox.batchStatus' },
      schema: { tags, summary: 'Batch Get Sandbox Statuses', body: BatchStatusBody, response: { 200: BatchStatusResponse, ...ERROR_RESPONSES } },
    },
    async (request, reply) => {
      const wait = requestedCreateWait(request.headers[CREATE_WAIT_HEADER]);
      if (wait.error !== undefined) throw ApiError.invalid(CREATE_WAIT_HEADER, wait.error);
      const principal = principalOf(request);
      let { statuses, missing } = await sandboxes.batchStatus(principal, request.body.sandbox_ids);
      // Held (bounded) while sandboxes asked for are still starting here, so the Prime SDK's
      // wait sees them RUNNING instead of sleeping a second; the answer is re-read afterwards.
      const starting = statuses.filter((s) => s.status === 'PENDING' || s.status === 'PROVISIONING').map((s) => s.id);
      if (starting.length > 0) {
        const left = new AbortController();
        const onClose = (): void => left.abort();
        reply.raw.once('close', onClose);
        try {
          const held = await createHold.settleAll(starting, { ...(wait.ms !== undefined ? { requestedMs: wait.ms } : {}), signal: left.signal });
          if (held) ({ statuses, missing } = await sandboxes.batchStatus(principal, request.body.sandbox_ids));
        } finally {
          reply.raw.off('close', onClose);
        }
      }
      return {
        statuses: statuses.map((s) => ({
          sandbox_id: s.id,
          status: s.status,
          error_type: s.errorType,
          error_message: s.errorMessage,
          pending_image_build_id: null,
        })),
        errors: missing.map((id) => ({ sandbox_id: id, code: 'NOT_FOUND' as const, message: `Sandbox ${id} not found` })),
      };
    },
  );

  app.get<{ Params: { sandbox_id: string } }>(
    '/sandbox/:sandbox_id',
    {
      config: { rateLimit: 'sandbox.get' },
      schema: { tags, summary: 'Get Sandbox Endpoint', params: SandboxIdParams, response: { 200: SandboxResponse, ...ERROR_RESPONSES } },
    },
    async (request) => toSandboxResponse(await sandboxes.get(principalOf(request), request.params.sandbox_id)),
  );

  app.patch<{ Params: { sandbox_id: string }; Body: UpdateSandboxBody }>(
    '/sandbox/:sandbox_id',
    {
      config: { rateLimit: 'sandbox.update' },
      schema: {
        tags,
        summary: 'Update Sandbox Endpoint',
        params: SandboxIdParams,
        body: UpdateSandboxBody,
        response: { 200: SandboxResponse, 409: ERROR_RESPONSES[404], ...ERROR_RESPONSES },
      },
    },
    async (request) => {
      const b = request.body;
      const sandbox = await sandboxes.update(principalOf(request), request.params.sandbox_id, {
        ...(b.timeout_minutes !== undefined ? { timeoutMinutes: b.timeout_minutes } : {}),
        ...(b.idle_timeout_minutes !== undefined ? { idleTimeoutMinutes: b.idle_timeout_minutes } : {}),
        ...(b.labels !== undefined ? { labels: b.labels } : {}),
      });
      return toSandboxResponse(sandbox);
    },
  );

  app.delete<{ Params: { sandbox_id: string } }>(
    '/sandbox/:sandbox_id',
    {
      config: { rateLimit: 'sandbox.delete' },
      schema: { tags, summary: 'Delete Sandbox Endpoint', params: SandboxIdParams, response: { 200: SuccessResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const id = request.params.sandbox_id;
      const { alreadyEnded } = await sandboxes.delete(principalOf(request), id);
      return { success: true, message: alreadyEnded ? `Sandbox ${id} had already ended` : `Sandbox ${id} deleted` };
    },
  );
}

