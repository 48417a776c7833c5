import type { FastifyInstance, FastifyReply } from 'fastify';
import type { CheckpointState } from '../../records/checkpoint-records.js';
import type { SandboxRecord } from '../../records/sandbox-records.js';
import type { CreateHold } from '../../services/create-hold.js';
import { type AppServices, principalOf } from '../app-services.js';
import { toCheckpointResponse } from '../checkpoint-mapper.js';
import { toSandboxResponse } from '../sandbox-mapper.js';
import { ERROR_RESPONSES, ErrorBody, SandboxIdParams, SuccessResponse } from '../schemas/common.js';
import {
  CheckpointIdParams,
  CheckpointListResponse,
  CheckpointPageResponse,
  CheckpointResponse,
  CreateCheckpointBody,
  ForkCheckpointBody,
  ForkResponse,
  ForkSandboxBody,
  ForkSandboxResponse,
  ListCheckpointsQuery,
  SandboxCheckpointsQuery,
} from '../schemas/checkpoint-schemas.js';
import { createInputOf } from './sandbox-routes.js';

const tags = ['Checkpoints'];
const WITH_409 = { 409: ErrorBody, ...ERROR_RESPONSES };
type SandboxParams = { sandbox_id: string };
type CheckpointParams = { checkpoint_id: string };

/** Holds new forks' answers while they start (bounded, as `POST /sandbox` does); a client that goes away ends the hold. */
async function settleForks(createHold: CreateHold, reply: FastifyReply, created: SandboxRecord[]): Promise<SandboxRecord[]> {
  const left = new AbortController();
  const onClose = (): void => left.abort();
  reply.raw.once('close', onClose);
  try {
    return await Promise.all(created.map((sandbox) => createHold.settle(sandbox, { signal: left.signal })));
  } finally {
    reply.raw.off('close', onClose);
  }
}

/**
 * Checkpoints in Prime's shape (`POST /sandbox/{id}/checkpoints`, `GET /sandbox/checkpoints/{id}`,
 * `GET /sandbox/{id}/checkpoints`) and Corral's extensions: every visible checkpoint, delete, and
 * forks (docs/checkpoints.md). Restores are `POST /sandbox` with `checkpoint_id`.
 */
export function registerCheckpointRoutes(app: FastifyInstance, { checkpoints, forks, createHold }: AppServices): void {
  app.post<{ Params: SandboxParams; Body: CreateCheckpointBody }>(
    '/sandbox/:sandbox_id/checkpoints',
    {
      config: { rateLimit: 'sandbox.checkpoint' },
      schema: { tags, summary: 'Create Sandbox Checkpoint', params: SandboxIdParams, body: CreateCheckpointBody, response: { 201: CheckpointResponse, ...WITH_409 } },
    },
    async (request, reply) => {
      const checkpoint = await checkpoints.checkpoint(principalOf(request), request.params.sandbox_id, { memory: request.body?.memory ?? false });
      reply.code(201);
      return toCheckpointResponse(checkpoint);
    },
  );

  app.get<{ Params: SandboxParams; Querystring: SandboxCheckpointsQuery }>(
    '/sandbox/:sandbox_id/checkpoints',
    {
      config: { rateLimit: 'sandbox.get' },
      schema: { tags, summary: 'List Sandbox Checkpoints', params: SandboxIdParams, querystring: SandboxCheckpointsQuery, response: { 200: CheckpointListResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const rows = await checkpoints.listForSandbox(principalOf(request), request.params.sandbox_id, request.query.checkpoint_id ?? null);
      return { checkpoints: rows.map(toCheckpointResponse) };
    },
  );

  app.get<{ Querystring: ListCheckpointsQuery }>(
    '/sandbox/checkpoints',
    {
      config: { rateLimit: 'sandbox.list' },
      schema: { tags, summary: 'List Checkpoints (Corral)', querystring: ListCheckpointsQuery, response: { 200: CheckpointPageResponse, ...ERROR_RESPONSES } },
    },
    async (request) => {
      const page = request.query.page ?? 1;
      const perPage = request.query.per_page ?? 50;
      const state = request.query.state as CheckpointState | undefined;
      const { checkpoints: rows, total } = await checkpoints.listVisible(principalOf(request), page, perPage, state ? [state] : undefined);
      return { checkpoints: rows.map(toCheckpointResponse), total, page, per_page: perPage, has_next: page * perPage < total };
    },
  );

  app.get<{ Params: CheckpointParams }>(
    '/sandbox/checkpoints/:checkpoint_id',
    {
      config: { rateLimit: 'sandbox.checkpointGet' },
      schema: { tags, summary: 'Get Checkpoint', params: CheckpointIdParams, response: { 200: CheckpointResponse, ...ERROR_RESPONSES } },
    },
    async (request) => toCheckpointResponse(await checkpoints.get(principalOf(request), request.params.checkpoint_id)),
  );

  app.delete<{ Params: CheckpointParams }>(
    '/sandbox/checkpoints/:checkpoint_id',
    {
      config: { rateLimit: 'sandbox.checkpoint' },
      schema: { tags, summary: 'Delete Checkpoint (Corral)', params: CheckpointIdParams, response: { 200: SuccessResponse, ...WITH_409 } },
    },
    async (request) => {
      const id = request.params.checkpoint_id;
      const { gone } = await checkpoints.delete(principalOf(request), id);
      return { success: true, message: gone ? `Checkpoint ${id} deleted` : `Checkpoint ${id} is DELETING: its data could not be deleted yet; the server retries` };
    },
  );

  app.post<{ Params: CheckpointParams; Body: ForkCheckpointBody }>(
    '/sandbox/checkpoints/:checkpoint_id/fork',
    {
      config: { rateLimit: 'sandbox.fork' },
      schema: { tags, summary: 'Fork Checkpoint (Corral)', params: CheckpointIdParams, body: ForkCheckpointBody, response: { 201: ForkResponse, ...WITH_409 } },
    },
    async (request, reply) => {
      const b = request.body;
      const created = await forks.forkCheckpoint(principalOf(request), request.params.checkpoint_id, b.count, createInputOf(b, 'fork'));
      const sandboxes = await settleForks(createHold, reply, created);
      reply.code(201);
      return { sandboxes: sandboxes.map(toSandboxResponse) };
    },
  );

  app.post<{ Params: SandboxParams; Body: ForkSandboxBody }>(
    '/sandbox/:sandbox_id/fork',
    {
      config: { rateLimit: 'sandbox.fork' },
      schema: { tags, summary: 'Fork Sandbox (Corral)', params: SandboxIdParams, body: ForkSandboxBody, response: { 201: ForkSandboxResponse, ...WITH_409 } },
    },
    async (request, reply) => {
      const b = request.body;
      const { checkpoint, sandboxes: created } = await forks.forkSandbox(principalOf(request), request.params.sandbox_id, b.count, b.memory ?? false);
      const sandboxes = await settleForks(createHold, reply, created);
      reply.code(201);
      return { checkpoint: toCheckpointResponse(checkpoint), sandboxes: sandboxes.map(toSandboxResponse) };
    },
  );
}
