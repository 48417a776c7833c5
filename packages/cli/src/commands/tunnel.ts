import type { Command } from 'commander';
import { callApi, resolveTarget } from '../../api-client.js';
import { type OutputFormat, printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import { startTunnelClient } from './tunnel-client.js';

interface CreatedTunnel {
  tunnel_id: string;
  url: string;
  binding_secret: string;
  expires_at: string;
  http_user?: string | null;
  http_password?: string | null;
  connect_url?: string;
}

interface TunnelStatusView {
  tunnel_id: string;
  name: string | null;
  status: string;
  url: string;
  local_port?: number;
  created_at: string;
  expires_at: string;
}

const COLUMNS = ['tunnel_id', 'name', 'status', 'url', 'local_port', 'expires_at'];

/** `corral tunnel start|list|get|delete` (`stop` = `delete`): reverse tunnels from this machine to a Corral server. */
export function registerTunnel(program: Command): void {
  const tunnel = program.command('tunnel').description('Serve a local port at a public Corral URL (reverse tunnel)');
  tunnel
    .command('start')
    .description('Create a tunnel and forward its URL to a local port until interrupted (the tunnel is deleted on exit)')
    .requiredOption('--port <port>', 'local port to serve', (v) => {
      const port = Number(v);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error('--port must be 1..65535');
      return port;
    })
    .option('--host <host>', 'local host to connect to', '127.0.0.1')
    .option('--name <name>', 'a name for the tunnel')
    .option('--label <label...>', 'labels for the tunnel')
    .option('--http-user <user>', 'require HTTP basic auth with this user (the password is printed once)')
    .action(
      run(async (options: { port: number; host: string; name?: string; label?: string[]; httpUser?: string }, globals: GlobalOptions) => {
        const target = resolveTarget(globals);
        const created = await callApi<CreatedTunnel>(target, 'POST', '/tunnel', {
          local_port: options.port,
          ...(options.name ? { name: options.name } : {}),
          ...(options.label ? { labels: options.label } : {}),
          ...(options.httpUser ? { http_user: options.httpUser } : {}),
        });
        process.stdout.write(`${created.url}\n`);
        process.stderr.write(`Tunnel ${created.tunnel_id} → ${options.host}:${options.port} (expires ${created.expires_at})\n`);
        if (created.http_password) process.stderr.write(`HTTP basic auth: ${created.http_user ?? ''}:${created.http_password}\n`);
        const connectUrl = created.connect_url ?? `${target.baseUrl.replace(/^http/, 'ws')}/api/v1/tunnel/${created.tunnel_id}/connect`;
        const client = startTunnelClient({
          connectUrl,
          apiKey: target.apiKey ?? '',
          bindingSecret: created.binding_secret,
          localPort: options.port,
          localHost: options.host,
          onStatus: (message) => process.stderr.write(`${message}\n`),
        });
        const stop = (): void => client.stop();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          await client.done;
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          await callApi(target, 'DELETE', `/tunnel/${encodeURIComponent(created.tunnel_id)}`).catch(() => undefined);
        }
      }),
    );
  tunnel
    .command('list')
    .description('List your tunnels')
    .action(
      run(async (_options: object, globals: GlobalOptions) => {
        const result = await callApi<{ tunnels: TunnelStatusView[] }>(resolveTarget(globals), 'GET', '/tunnel');
        printResult(globals.output as OutputFormat, result, result.tunnels as unknown as Array<Record<string, unknown>>, COLUMNS);
      }),
    );
  tunnel
    .command('get <tunnelId>')
    .description("Show a tunnel's status")
    .action(
      run(async (tunnelId: string, _options: object, globals: GlobalOptions) => {
        const result = await callApi<TunnelStatusView>(resolveTarget(globals), 'GET', `/tunnel/${encodeURIComponent(tunnelId)}`);
        printResult(globals.output as OutputFormat, result, [result as unknown as Record<string, unknown>], COLUMNS);
      }),
    );
  tunnel
    .command('delete <tunnelId>')
    .alias('stop')
    .description('Delete a tunnel (its client stops); `stop` is an alias, as in `prime tunnel stop`')
    .action(
      run(async (tunnelId: string, _options: object, globals: GlobalOptions) => {
        const result = await callApi<{ message: string }>(resolveTarget(globals), 'DELETE', `/tunnel/${encodeURIComponent(tunnelId)}`);
        if (globals.output === 'json') printResult('json', result, [], []);
        else process.stdout.write(`${result.message}\n`);
      }),
    );
}
