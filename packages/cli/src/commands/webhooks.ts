import type { Command } from 'commander';
import { registerWebhooksCreate } from './webhooks/create.js';
import { registerWebhooksDelete } from './webhooks/delete.js';
import { registerWebhooksDeliveries } from './webhooks/deliveries.js';
import { registerWebhooksList } from './webhooks/list.js';

/** `corral webhooks create|list|delete|deliveries`: signed HTTP callbacks for your sandboxes' events (or a team's). */
export function registerWebhooks(program: Command): void {
  const webhooks = program.command('webhooks').description("Register URLs that get your sandboxes' events (or a team's) as signed POSTs; list them, their deliveries, and delete them");
  registerWebhooksCreate(webhooks);
  registerWebhooksList(webhooks);
  registerWebhooksDelete(webhooks);
  registerWebhooksDeliveries(webhooks);
}
