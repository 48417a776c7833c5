import type { FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { WEBHOOK_EVENT_TYPES } from '../../services/webhook-service.js';
import { type AppServices, principalOf } from '../app-services.js';
import { ERROR_RESPONSES, Nullable, SuccessResponse } from '../schemas/common.js';

const tags = ['Webhooks'];

const Webhook = Type.Object({
  id: Type.String(),
  userId: Type.String(),
  teamId: Nullable(Type.String()),
  url: Type.String(),
  eventTypes: Type.Array(Type.String()),
  enabled: Type.Boolean(),
  createdAt: Type.String(),
});

const CreatedWebhook = Type.Object({
  ...Webhook.properties,
  secret: Type.String({ description: 'The signing secret (`whsec_…`): shown here once, never again' }),
});

const Attempt = Type.Object({
  at: Type.String(),
  durationMs: Type.Number(),
  statusCode: Nullable(Type.Integer()),
  error: Nullable(Type.String()),
});

const Delivery = Type.Object({
  id: Type.String({ description: 'Sent as `corral-webhook-id`, the same on every attempt' }),
  webhookId: Type.String(),
  eventId: Type.String(),
  eventType: Type.String(),
  status: Type.Union([Type.Literal('pending'), Type.Literal('delivering'), Type.Literal('delivered'), Type.Literal('failed')]),
  attempts: Type.Integer(),
  attemptLog: Type.Array(Attempt),
  lastStatusCode: Nullable(Type.Integer()),
  lastError: Nullable(Type.String()),
  nextAttemptAt: Nullable(Type.String()),
  deliveredAt: Nullable(Type.String()),
  createdAt: Type.String(),
});

const CreateWebhookBody = Type.Object({
  url: Type.String({ minLength: 1, maxLength: 2048 }),
  event_types: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
    minItems: 1,
    maxItems: 64,
    description: `Event types to deliver: ${WEBHOOK_EVENT_TYPES.join(', ')} (* for all)`,
  }),
  team_id: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 128 }))),
});

const WebhookIdParams = Type.Object({ webhook_id: Type.String({ minLength: 1, maxLength: 128 }) });

const DeliveriesQuery = Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }) });

/**
 * Webhooks (a Corral extension, docs/operations.md, **Webhooks**): endpoints that get the events of
 * the caller's sandboxes (or, for a team admin, the team's), signed; their deliveries with every
 * attempt; and a test delivery.
 */
export function registerWebhookRoutes(app: FastifyInstance, { webhooks }: AppServices): void {
  app.post<{ Body: Static<typeof CreateWebhookBody> }>(
    '/webhooks',
    {
      schema: {
        tags,
        summary: 'Create Webhook (Corral); the signing secret is returned once',
        body: CreateWebhookBody,
        response: { 201: CreatedWebhook, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const created = await webhooks.create(principalOf(request), { url: b.url, eventTypes: b.event_types, teamId: b.team_id ?? null });
      return reply.code(201).send(created);
    },
  );

  app.get(
    '/webhooks',
    { schema: { tags, summary: 'List Webhooks (Corral)', response: { 200: Type.Object({ webhooks: Type.Array(Webhook) }), ...ERROR_RESPONSES } } },
    async (request) => ({ webhooks: await webhooks.list(principalOf(request)) }),
  );

  app.delete<{ Params: Static<typeof WebhookIdParams> }>(
    '/webhooks/:webhook_id',
    { schema: { tags, summary: 'Delete Webhook (Corral), with its deliveries', params: WebhookIdParams, response: { 200: SuccessResponse, ...ERROR_RESPONSES } } },
    async (request) => {
      await webhooks.delete(principalOf(request), request.params.webhook_id);
      return { success: true, message: `Webhook ${request.params.webhook_id} deleted` };
    },
  );

  app.get<{ Params: Static<typeof WebhookIdParams>; Querystring: Static<typeof DeliveriesQuery> }>(
    '/webhooks/:webhook_id/deliveries',
    {
      schema: {
        tags,
        summary: 'List Webhook Deliveries (Corral), newest first',
        params: WebhookIdParams,
        querystring: DeliveriesQuery,
        response: { 200: Type.Object({ deliveries: Type.Array(Delivery) }), ...ERROR_RESPONSES },
      },
    },
    async (request) => ({ deliveries: await webhooks.deliveries(principalOf(request), request.params.webhook_id, request.query.limit) }),
  );

  app.post<{ Params: Static<typeof WebhookIdParams> }>(
    '/webhooks/:webhook_id/test',
    {
      schema: {
        tags,
        summary: 'Send a Test Webhook Delivery (Corral): a `webhook.test` event, whatever the event types',
        params: WebhookIdParams,
        response: { 202: Delivery, ...ERROR_RESPONSES },
      },
    },
    async (request, reply) => reply.code(202).send(await webhooks.test(principalOf(request), request.params.webhook_id)),
  );
}
