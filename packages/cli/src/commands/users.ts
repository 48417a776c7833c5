import type { Command } from 'commander';
import { lazy } from '../run.js';
import { registerQuota } from './quota.js';

/**
 * `corral users create|list|delete` (server administrators) and `corral users quota`; the
 * implementations are in `users-actions.ts`, loaded when one runs.
 */
export function registerUsers(program: Command): void {
  const users = program.command('users').description('Manage users (admin)');
  users
    .command('create <name>')
    .description('Create a user; add --key to also create and print an API key for them')
    .option('--email <email>', 'contact address')
    .option('--admin', 'make the user a server administrator', false)
    .option('--key', 'also create an API key for the new user and print it', false)
    .action(lazy(async () => (await import('./users-actions.js')).createUser));
  users
    .command('list')
    .description('List users')
    .action(lazy(async () => (await import('./users-actions.js')).listUsers));
  users
    .command('delete <userId>')
    .description('Delete a user and revoke their keys')
    .action(lazy(async () => (await import('./users-actions.js')).deleteUser));
  registerQuota(users, 'user');
}
