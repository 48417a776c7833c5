import type { Command } from 'commander';
import { lazy } from '../run.js';

/** Parses `--port`: 1..65535. */
function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error('--port must be 1..65535');
  return port;
}

/**
 * `corral tunnel start|list|get|delete` (`stop` = `delete`): reverse tunnels from this machine to a
 * Corral server. The implementations are in `tunnel/tunnel-actions.ts`, loaded when one runs.
 */
export function registerTunnel(program: Command): void {
  const tunnel = program.command('tunnel').description('Serve a local port at a public Corral URL (reverse tunnel)');
  tunnel
    .command('start')
    .description('Create a tunnel and forward its URL to a local port until interrupted (the tunnel is deleted on exit)')
    .requiredOption('--port <port>', 'local port to serve', parsePort)
    .option('--host <host>', 'local host to connect to', '127.0.0.1')
    .option('--name <name>', 'a name for the tunnel')
    .option('--label <label...>', 'labels for the tunnel')
    .option('--http-user <user>', 'require HTTP basic auth with this user (the password is printed once)')
    .action(lazy(async () => (await import('./tunnel/tunnel-actions.js')).startTunnel));
  tunnel
    .command('list')
    .description('List your tunnels')
    .action(lazy(async () => (await import('./tunnel/tunnel-actions.js')).listTunnels));
  tunnel
    .command('get <tunnelId>')
    .description("Show a tunnel's status")
    .action(lazy(async () => (await import('./tunnel/tunnel-actions.js')).getTunnel));
  tunnel
    .command('delete <tunnelId>')
    .alias('stop')
    .description('Delete a tunnel (its client stops); `stop` is an alias, as in `prime tunnel stop`')
    .action(lazy(async () => (await import('./tunnel/tunnel-actions.js')).deleteTunnel));
}
