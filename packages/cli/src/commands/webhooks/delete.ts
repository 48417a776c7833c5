import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';

/** `corral webhooks delete <id>`: deletes the endpoint and its deliveries. */
export function registerWebhooksDelete(webhooks: Command): void {
  webhooks
    .command('delete <id>')
    .description('Delete a webhook and its delivery records')
    .action(
      run(async (id: string, _options: Record<string, never>, globals: GlobalOptions) => {
        const { clientFor } = await import('../../sdk-client.js');
        const result = await clientFor(globals).webhooks.delete(id);
        if (globals.output === 'json') printResult('json', result, [], []);
        else process.stdout.write(`${result.message}\n`);
      }),
    );
}
