import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';

/** `corral webhooks list`: your endpoints and those of the teams you administer. */
export function registerWebhooksList(webhooks: Command): void {
  webhooks
    .command('list')
    .description('List your webhooks and those of the teams you administer (never their secrets)')
    .action(
      run(async (_options: Record<string, never>, globals: GlobalOptions) => {
        const { clientFor } = await import('../../sdk-client.js');
        const result = await clientFor(globals).webhooks.list();
        const rows = result.webhooks.map((w) => ({
          id: w.id,
          url: w.url,
          events: w.eventTypes.join(','),
          owner: w.teamId === null ? 'personal' : `team ${w.teamId}`,
          enabled: w.enabled,
          created: w.createdAt,
        }));
        printResult(globals.output, result, rows, ['id', 'url', 'events', 'owner', 'enabled', 'created']);
      }),
    );
}
