import type { Command } from 'commander';
import { callApi, resolveTarget } from '../api-client.js';
import { printResult } from '../output.js';
import { type GlobalOptions, run } from '../run.js';
import { registerQuota } from './quota.js';

interface UserView {
  id: string;
  name: string;
  email: string | null;
  is_admin: boolean;
  created_at: string;
}

/** `corral users create|list|delete` (server administrators) and `corral users quota`. */
export function registerUsers(program: Command): void {
  const users = program.command('users').description('Manage users (admin)');
  users
    .command('create <name>')
    .description('Create a user; add --key to also create and print an API key for them')
    .option('--email <email>', 'contact address')
    .option('--admin', 'make the user a server administrator', false)
    .option('--key', 'also create an API key for the new user and print it', false)
    .action(
      run(async (name: string, options: { email?: string; admin: boolean; key: boolean }, globals: GlobalOptions) => {
        const target = resolveTarget(globals);
        const user = await callApi<UserView>(target, 'POST', '/users', { name, is_admin: options.admin, ...(options.email ? { email: options.email } : {}) });
        let key: string | undefined;
        if (options.key) key = (await callApi<{ key: string }>(target, 'POST', '/keys', { user_id: user.id, name: `${name} key` })).key;
        if (globals.output === 'json') printResult('json', { user, ...(key ? { key } : {}) }, [], []);
        else {
          printResult('table', user, [user as unknown as Record<string, unknown>], ['id', 'name', 'email', 'is_admin']);
          if (key) process.stdout.write(`\nAPI key (shown once): ${key}\n`);
        }
      }),
    );
  users
    .command('list')
    .description('List users')
    .action(
      run(async (_options: object, globals: GlobalOptions) => {
        const result = await callApi<{ users: UserView[] }>(resolveTarget(globals), 'GET', '/users');
        printResult(globals.output, result, result.users as unknown as Array<Record<string, unknown>>, ['id', 'name', 'email', 'is_admin', 'created_at']);
      }),
    );
  users
    .command('delete <userId>')
    .description('Delete a user and revoke their keys')
    .action(
      run(async (userId: string, _options: object, globals: GlobalOptions) => {
        const result = await callApi<{ message: string }>(resolveTarget(globals), 'DELETE', `/users/${encodeURIComponent(userId)}`);
        if (globals.output === 'json') printResult('json', result, [], []);
        else process.stdout.write(`${result.message}\n`);
      }),
    );
  registerQuota(users, 'user');
}
