import { Command, Option } from 'commander';
import { registerImages } from './commands/images.js';
import { registerKeys } from './commands/keys.js';
import { registerLogin } from './commands/login.js';
import { registerSandbox } from './commands/sandbox.js';
import { registerServe } from './commands/serve.js';
import { registerTeams } from './commands/teams.js';
import { registerTunnel } from './commands/tunnel.js';
import { registerWebhooks } from './commands/webhooks.js';
import { registerUsers } from './commands/users.js';

/**
 * The `corral` command with every verb registered: names, options and help text only. Each action
 * imports its implementation (and the SDK or the server) when it runs, so `corral --version` and
 * `corral sandbox list` do not load the server.
 */
export function buildProgram(): Command {
  const program = new Command('corral')
    .description('Corral: self-hosted sandboxes for AI agents, compatible with the Prime Sandbox API')
    .version('0.1.0')
    .option('--api-url <url>', 'server URL (CORRAL_API_URL, then PRIME_API_BASE_URL, then `corral login`)')
    .option('--api-key <key>', 'API key (CORRAL_API_KEY, then PRIME_API_KEY, then `corral login`)')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['table', 'json']).default('table'))
    .showHelpAfterError();
  registerServe(program);
  registerLogin(program);
  registerSandbox(program);
  registerKeys(program);
  registerImages(program);
  registerUsers(program);
  registerTeams(program);
  registerTunnel(program);
  registerWebhooks(program);
  return program;
}
