import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { SandboxEventRecord } from '../../records/event-records.js';
import { type AppServices, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, ErrorBody, SandboxIdParams } from '../schemas/common.js';

const tags = ['Sandbox'];

/** One event as the API shows it. */
const SandboxEvent = Type.Object({
  id: Type.String({ description: 'Sorts in recording order; pass the last one seen as `after`' }),
  sandboxId: Type.String(),
  at: Type.String({ description: 'ISO-8601 time' }),
  type: Type.String({ description: 'sandbox.created, sandbox.status, exec, file.upload, file.download, file.read, exposure.created, exposure.deleted, ssh.session_created, ssh.session_deleted, egress.policy_changed, stream.opened, checkpoint.created, checkpoint.durable, checkpoint.failed, checkpoint.deleted' }),
  actor: Type.Union([Type.Object({ userId: Type.String(), keyId: Type.Union([Type.String(), Type.Null()]) }), Type.Null()]),
  data: Type.Record(Type.String(), Type.Unknown()),
});

const EventsQuery = Type.Object({
  limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
  after: Type.Optional(Type.String({ minLength: 1, maxLength: 64, pattern: '^[0-9a-z]+$' })),
  follow: Type.Boolean({ default: false, description: 'Stream events as NDJSON (one JSON object a line) until the sandbox has ended' }),
});

const Nullable = <T extends Type.TSchema>(schema: T) => Type.Union([schema, Type.Null()]);

const StatsResponse = Type.Object({
  sandboxId: Type.String(),
  status: Type.String(),
  at: Type.String({ description: 'When it was read (ISO-8601)' }),
  cpu: Type.Object({ usageSeconds: Type.Number({ description: 'CPU time used since start' }), limitCores: Type.Number() }),
  memory: Type.Object({ usedBytes: Type.Number(), limitBytes: Type.Number() }),
  pids: Type.Integer(),
  disk: Type.Object({ usedBytes: Nullable(Type.Number()), limitBytes: Type.Number() }),
  network: Nullable(Type.Object({ rxBytes: Type.Number(), txBytes: Type.Number(), rxPackets: Type.Number(), txPackets: Type.Number() })),
});

const EventsResponse = Type.Object({
  events: Type.Array(SandboxEvent),
  hasMore: Type.Boolean({ description: 'The page is full: ask again with `after` set to the last id' }),
});

function toWire(event: SandboxEventRecord): Record<string, unknown> {
  return { id: event.id, sandboxId: event.sandboxId, at: event.at, type: event.type, actor: event.actor, data: event.data };
}

/**
 * `GET /api/v1/sandbox/{id}/stats` (CPU, memory, pids, disk, network; 409 unless RUNNING or PAUSED) and
 * `GET /api/v1/sandbox/{id}/events` (a Corral extension, docs/events.md): a sandbox's timeline,
 * oldest first, `limit` at a time after the id `after`; with `follow=true`, an NDJSON stream of
 * the events after `after` and then of new ones as they happen, ending once the sandbox has ended.
 * Visible to whoever may see the sandbox (404 otherwise).
 */
export function registerObserveRoutes(app: FastifyInstance, { sandboxes, events }: AppServices): void {
  // A Corral extension: one sandbox's resource usage (docs/operations.md, "Stats").
  app.get<{ Params: { sandbox_id: string } }>(
    '/sandbox/:sandbox_id/stats',
    {
      config: { rateLimit: 'sandbox.stats' },
      schema: { tags, summary: 'Get Sandbox Stats (Corral)', params: SandboxIdParams, response: { 200: StatsResponse, 409: ErrorBody, ...ERROR_RESPONSES } },
    },
    async (request) => sandboxes.stats(principalOf(request), request.params.sandbox_id),
  );

  // Open follows end when the server closes (it would otherwise wait for them).
  const following = new Set<AbortController>();
  app.addHook('preClose', async () => {
    for (const follow of following) follow.abort();
  });
  app.get<{ Params: { sandbox_id: string }; Querystring: { limit: number; after?: string; follow: boolean } }>(
    '/sandbox/:sandbox_id/events',
    {
      config: { rateLimit: 'sandbox.events' },
      schema: {
        tags,
        summary: 'List Sandbox Events (Corral)',
        params: SandboxIdParams,
        querystring: EventsQuery,
        response: { 200: EventsResponse, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const sandbox = await sandboxes.get(principalOf(request), request.params.sandbox_id);
      const after = request.query.after ?? null;
      if (!request.query.follow) {
        const page = await events.list(sandbox.id, after, request.query.limit);
        return { events: page.map(toWire), hasMore: page.length === request.query.limit };
      }
      const gone = new AbortController();
      following.add(gone);
      reply.raw.once('close', () => {
        following.delete(gone);
        gone.abort();
      });
      async function* lines(): AsyncGenerator<string> {
        for await (const event of events.follow(sandbox.id, after, gone.signal)) yield `${JSON.stringify(toWire(event))}\n`;
      }
      return reply.type('application/x-ndjson; charset=utf-8').header('cache-control', 'no-store').send(Readable.from(lines(), { objectMode: false }));
    },
  );
}
