import type {
  CreateWebhookRequest,
  CreateWebhookResponse,
  DeleteWebhookResponse,
  ListWebhookDeliveriesResponse,
  ListWebhooksResponse,
  TestWebhookResponse,
} from '../generated/api.js';
import type { HttpTransport } from '../http.js';

const seg = encodeURIComponent;

/**
 * Webhooks (`/webhooks`, a Corral extension): endpoints that get the events of your sandboxes (or,
 * as a team admin, the team's) as signed POSTs. Check each delivery with {@link verifyWebhook}.
 * Unknown ids throw {@link NotFoundError}.
 */
export class WebhooksApi {
  constructor(private readonly http: HttpTransport) {}
  /** `POST /webhooks`: the answer carries the signing `secret`, shown this once. */
  create(body: CreateWebhookRequest): Promise<CreateWebhookResponse> {
    return this.http.call('POST', '/webhooks', { body, operation: 'CreateWebhook' });
  }
  /** `GET /webhooks`: your endpoints and those of the teams you administer (no secrets). */
  list(): Promise<ListWebhooksResponse> {
    return this.http.call('GET', '/webhooks', { operation: 'ListWebhooks' });
  }
  /** `DELETE /webhooks/{id}`, with its deliveries. */
  delete(webhookId: string): Promise<DeleteWebhookResponse> {
    return this.http.call('DELETE', `/webhooks/${seg(webhookId)}`, { operation: 'DeleteWebhook' });
  }
  /** `GET /webhooks/{id}/deliveries`: newest first, each with its attempts. */
  deliveries(webhookId: string, options: { limit?: number } = {}): Promise<ListWebhookDeliveriesResponse> {
    return this.http.call('GET', `/webhooks/${seg(webhookId)}/deliveries`, { query: { limit: options.limit }, operation: 'ListWebhookDeliveries' });
  }
  /** `POST /webhooks/{id}/test`: queues a `webhook.test` delivery and returns it. */
  test(webhookId: string): Promise<TestWebhookResponse> {
    return this.http.call('POST', `/webhooks/${seg(webhookId)}/test`, { operation: 'TestWebhook' });
  }
}
