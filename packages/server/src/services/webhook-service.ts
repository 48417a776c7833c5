import { ApiError } from '../errors/api-error.js';
import { SANDBOX_EVENT_TYPES } from '../records/event-records.js';
import type { WebhookAttemptRecord, WebhookDeliveryRecord, WebhookDeliveryStatus, WebhookEndpointRecord } from '../records/webhook-records.js';
import type { Store } from '../store/store.js';
import { newId } from '../util/ids.js';
import { nowIso } from '../util/time.js';
import { newWebhookSecret } from '../util/webhook-signature.js';
import type { Principal } from './auth-service.js';
import type { WebhookDelivery } from './webhook-delivery.js';
import { webhookUrlProblem } from './webhook-url.js';

/** The event types an endpoint may ask for: every sandbox event type, and `*` for all of them. */
export const WEBHOOK_EVENT_TYPES: readonly string[] = [...SANDBOX_EVENT_TYPES, '*'];

/** An endpoint as the API shows it: never the secret (but for the create's answer). */
export interface WebhookView {
  id: string;
  userId: string;
  teamId: string | null;
  url: string;
  eventTypes: string[];
  enabled: boolean;
  createdAt: string;
}

/** A delivery as the API shows it: its attempts, but not the body. */
export interface WebhookDeliveryView {
  id: string;
  webhookId: string;
  eventId: string;
  eventType: string;
  status: WebhookDeliveryStatus;
  attempts: number;
  attemptLog: WebhookAttemptRecord[];
  lastStatusCode: number | null;
  lastError: string | null;
  /** When the next attempt is due; null once delivered or given up. */
  nextAttemptAt: string | null;
  deliveredAt: string | null;
  createdAt: string;
}

function view(e: WebhookEndpointRecord): WebhookView {
  return { id: e.id, userId: e.userId, teamId: e.teamId, url: e.url, eventTypes: e.eventTypes, enabled: e.enabled, createdAt: e.createdAt };
}

/** The API's view of a delivery. */
export function deliveryView(d: WebhookDeliveryRecord): WebhookDeliveryView {
  return {
    id: d.id,
    webhookId: d.endpointId,
    eventId: d.eventId,
    eventType: d.eventType,
    status: d.status,
    attempts: d.attempts,
    attemptLog: d.attemptLog,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    nextAttemptAt: d.status === 'delivered' || d.status === 'failed' ? null : d.nextAttemptAt,
    deliveredAt: d.deliveredAt,
    createdAt: d.createdAt,
  };
}

/**
 * Webhook endpoints (`/api/v1/webhooks`): a user registers endpoints for their own sandboxes, a
 * team admin for the team's. The caller sees and manages their personal endpoints and those of the
 * teams they administer; anyone else's are 404. The signing secret is returned once, by the create.
 */
export class WebhookService {
  constructor(
    private readonly store: Store,
    private readonly delivery: WebhookDelivery,
    private readonly options: { allowPrivate: boolean },
  ) {}

  async create(caller: Principal, input: { url: string; eventTypes: string[]; teamId: string | null }): Promise<WebhookView & { secret: string }> {
    if (input.teamId !== null && caller.teams.get(input.teamId) !== 'admin' && !caller.user.isAdmin) {
      throw ApiError.invalid('team_id', `only an admin of team ${input.teamId} may register its webhooks`);
    }
    const unknown = input.eventTypes.find((t) => !WEBHOOK_EVENT_TYPES.includes(t));
    if (unknown !== undefined) throw ApiError.invalid('event_types', `unknown event type "${unknown}"; known: ${WEBHOOK_EVENT_TYPES.join(', ')}`);
    const problem = await webhookUrlProblem(input.url, this.options.allowPrivate);
    if (problem !== null) throw ApiError.invalid('url', problem);
    const record: WebhookEndpointRecord = {
      id: newId(),
      userId: caller.user.id,
      teamId: input.teamId,
      url: input.url,
      eventTypes: [...new Set(input.eventTypes)],
      secret: newWebhookSecret(),
      enabled: true,
      createdAt: nowIso(),
    };
    await this.store.insertWebhookEndpoint(record);
    return { ...view(record), secret: record.secret };
  }

  async list(caller: Principal): Promise<WebhookView[]> {
    const adminOf = [...caller.teams].filter(([, role]) => role === 'admin').map(([teamId]) => teamId);
    const rows = await this.store.listWebhookEndpoints(caller.user.id, adminOf);
    // The caller's own team endpoints of teams they no longer administer are not theirs to see.
    return rows.filter((e) => this.manages(caller, e)).map(view);
  }

  async delete(caller: Principal, id: string): Promise<void> {
    await this.managed(caller, id);
    await this.store.deleteWebhookEndpoint(id);
  }

  /** The endpoint's deliveries, newest first. */
  async deliveries(caller: Principal, id: string, limit: number): Promise<WebhookDeliveryView[]> {
    await this.managed(caller, id);
    return (await this.store.listWebhookDeliveries(id, limit)).map(deliveryView);
  }

  /** Queues a `webhook.test` delivery to the endpoint (whatever its event types) and returns it. */
  async test(caller: Principal, id: string): Promise<WebhookDeliveryView> {
    const endpoint = await this.managed(caller, id);
    return deliveryView(await this.delivery.sendTest(endpoint));
  }

  /** Deletes a deleted user's personal endpoints (their team endpoints stay: they are the team's). */
  async forgetUser(userId: string): Promise<void> {
    for (const endpoint of await this.store.listWebhookEndpoints(userId, [])) {
      if (endpoint.teamId === null && endpoint.userId === userId) await this.store.deleteWebhookEndpoint(endpoint.id);
    }
  }

  private manages(caller: Principal, e: WebhookEndpointRecord): boolean {
    return e.teamId === null ? e.userId === caller.user.id : caller.teams.get(e.teamId) === 'admin' || (caller.user.isAdmin && e.userId === caller.user.id);
  }

  private async managed(caller: Principal, id: string): Promise<WebhookEndpointRecord> {
    const endpoint = await this.store.getWebhookEndpoint(id);
    if (!endpoint || !this.manages(caller, endpoint)) throw new ApiError('WEBHOOK_NOT_FOUND', `Webhook ${id} not found`);
    return endpoint;
  }
}
