import type { Command } from 'commander';
import { lazy } from '../run.js';

/** `corral keys create|list|revoke`; the implementations are in `keys-actions.ts`, loaded when one runs. */
export function registerKeys(program: Command): void {
  const keys = program.command('keys').description('Manage API keys');
  keys
    .command('create')
    .description('Create an API key (printed once)')
    .option('--name <name>', 'a label for the key', 'api key')
    .option('--user <userId>', "another user's id (admin only)")
    .action(lazy(async () => (await import('./keys-actions.js')).createKey));
  keys
    .command('list')
    .description('List API keys')
    .option('--user <userId>', "another user's keys (admin only)")
    .action(lazy(async () => (await import('./keys-actions.js')).listKeys));
  keys
    .command('revoke <keyId>')
    .description('Revoke an API key')
    .action(lazy(async () => (await import('./keys-actions.js')).revokeKey));
}
