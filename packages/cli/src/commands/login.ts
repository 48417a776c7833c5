import type { Command } from 'commander';
import { configFilePath } from '../cli-config.js';
import { lazy } from '../run.js';

/** `corral login`: checks a URL and key against the server and stores them for later commands (`login-action.ts`). */
export function registerLogin(program: Command): void {
  program
    .command('login')
    .description(`Check and store the server URL and API key (in ${configFilePath()}, mode 0600)`)
    .action(lazy(async () => (await import('./login-action.js')).login));
}
