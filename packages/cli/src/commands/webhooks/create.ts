import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';

/** `corral webhooks create <url> [--events a,b] [--team <id>]`: prints the endpoint and its signing secret (shown this once). */
export function registerWebhooksCreate(webhooks: Command): void {
  webhooks
    .command('create <url>')
    .description('Register an http(s) URL for sandbox events; prints the signing secret, which is never shown again')
    .option('--events <types>', 'comma-separated event types (sandbox.created, sandbox.status, exec, …), or * for all', '*')
    .option('--team <id>', "the team's sandboxes' events (you must be an admin of the team)")
    .action(
      run(async (url: string, options: { events: string; team?: string }, globals: GlobalOptions) => {
        const { clientFor } = await import('../../sdk-client.js');
        const eventTypes = options.events.split(',').map((t) => t.trim()).filter((t) => t !== '');
        const created = await clientFor(globals).webhooks.create({ url, event_types: eventTypes, ...(options.team !== undefined ? { team_id: options.team } : {}) });
        if (globals.output === 'json') {
          printResult('json', created, [], []);
          return;
        }
        process.stdout.write(`Webhook ${created.id} → ${created.url} (${created.eventTypes.join(', ')})\n`);
        process.stdout.write(`Signing secret (shown once; verify deliveries with it): ${created.secret}\n`);
      }),
    );
}
