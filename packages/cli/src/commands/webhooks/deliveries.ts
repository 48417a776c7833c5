import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';

/** `corral webhooks deliveries <id> [--limit n]`: a webhook's deliveries, newest first, with their attempts. */
export function registerWebhooksDeliveries(webhooks: Command): void {
  webhooks
    .command('deliveries <id>')
    .description("A webhook's deliveries, newest first: status, attempts, the last answer or error, and when the next attempt is due")
    .option('--limit <n>', 'most deliveries shown (1..500, default 50)')
    .action(
      run(async (id: string, options: { limit?: string }, globals: GlobalOptions) => {
        const limit = options.limit === undefined ? 50 : Number(options.limit);
        if (!Number.isInteger(limit)) throw new Error(`--limit expects a whole number, got "${options.limit}"`);
        const { clientFor } = await import('../../sdk-client.js');
        const result = await clientFor(globals).webhooks.deliveries(id, { limit });
        const rows = result.deliveries.map((d) => ({
          id: d.id,
          event: d.eventType,
          status: d.status,
          attempts: d.attempts,
          last: d.lastError ?? d.lastStatusCode,
          next: d.nextAttemptAt,
          created: d.createdAt,
        }));
        printResult(globals.output, result, rows, ['id', 'event', 'status', 'attempts', 'last', 'next', 'created']);
      }),
    );
}
