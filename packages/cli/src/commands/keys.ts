import type { ListKeysResponse } from '@corral/sdk';
import type { Command } from 'commander';
import { callApi, resolveTarget } from '../api-client.js';
import { type OutputFormat, printResult } from '../output.js';
import { type GlobalOptions, run } from '../run.js';

type KeyView = ListKeysResponse['keys'][number];

/** `corral keys create|list|revoke`. */
export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('Manage API keys');
  keys
    .command('create')
    .description('Create an API key (printed once)')
    .option('--name <name>', 'a label for the key', 'api key')
    .option('--user <userId>', "another user's id (admin only)")
    .action(
      run(async (options: { name: string; user?: string }, globals: GlobalOptions) => {
        const created = await callApi<KeyView & { key: string }>(resolveTarget(globals), 'POST', '/keys', {
          name: options.name,
          ...(options.user ? { user_id: options.user } : {}),
        });
        if (globals.output === 'json') printResult('json', created, [], []);
        else process.stdout.write(`${created.key}\n`);
        process.stderr.write(`Key ${created.id} created for user ${created.user_id}. It is not shown again.\n`);
      }),
    );
  keys
    .command('list')
    .description('List API keys')
    .option('--user <userId>', "another user's keys (admin only)")
    .action(
      run(async (options: { user?: string }, globals: GlobalOptions) => {
        const query = options.user ? `?user_id=${encodeURIComponent(options.user)}` : '';
        const result = await callApi<{ keys: KeyView[] }>(resolveTarget(globals), 'GET', `/keys${query}`);
        printResult(globals.output as OutputFormat, result, result.keys as unknown as Array<Record<string, unknown>>, [
          'id',
          'name',
          'prefix',
          'user_id',
          'created_at',
          'revoked_at',
        ]);
      }),
    );
  keys
    .command('revoke <keyId>')
    .description('Revoke an API key')
    .action(
      run(async (keyId: string, _options: object, globals: GlobalOptions) => {
        const result = await callApi<{ message: string }>(resolveTarget(globals), 'DELETE', `/keys/${encodeURIComponent(keyId)}`);
        if (globals.output === 'json') printResult('json', result, [], []);
        else process.stdout.write(`${result.message}\n`);
      }),
    );
}
