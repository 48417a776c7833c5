import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';
import { startTunnelClient } from './tunnel-client.js';

const COLUMNS = ['tunnel_id', 'name', 'status', 'url', 'local_port', 'expires_at'];

/** The flags of `corral tunnel start`. */
export interface StartTunnelOptions {
  port: number;
  host: string;
  name?: string;
  label?: string[];
  httpUser?: string;
}

/**
 * `corral tunnel start --port P`: creates a tunnel, prints its URL and forwards it to the local
 * port until interrupted or the server ends the tunnel; the tunnel is deleted on the way out.
 */
export async function startTunnel(options: StartTunnelOptions, globals: GlobalOptions): Promise<void> {
  const client = clientFor(globals);
  const created = await client.tunnels.create({
    local_port: options.port,
    ...(options.name ? { name: options.name } : {}),
    ...(options.label ? { labels: options.label } : {}),
    ...(options.httpUser ? { http_user: options.httpUser } : {}),
  });
  process.stdout.write(`${created.url}\n`);
  process.stderr.write(`Tunnel ${created.tunnel_id} → ${options.host}:${options.port} (expires ${created.expires_at})\n`);
  if (created.http_password) process.stderr.write(`HTTP basic auth: ${created.http_user ?? ''}:${created.http_password}\n`);
  const connectUrl = created.connect_url ?? `${client.options.apiUrl.replace(/^http/, 'ws')}/api/v1/tunnel/${created.tunnel_id}/connect`;
  const link = startTunnelClient({
    connectUrl,
    apiKey: client.options.apiKey ?? '',
    bindingSecret: created.binding_secret,
    localPort: options.port,
    localHost: options.host,
    onStatus: (message) => process.stderr.write(`${message}\n`),
  });
  const stop = (): void => link.stop();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await link.done;
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    await client.tunnels.delete(created.tunnel_id).catch(() => undefined);
  }
}

/** `corral tunnel list`. */
export async function listTunnels(_options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).tunnels.list();
  printResult(globals.output, result, result.tunnels, COLUMNS);
}

/** `corral tunnel get ID`. */
export async function getTunnel(tunnelId: string, _options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).tunnels.get(tunnelId);
  printResult(globals.output, result, [result], COLUMNS);
}

/** `corral tunnel delete ID` (alias `stop`). */
export async function deleteTunnel(tunnelId: string, _options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).tunnels.delete(tunnelId);
  if (globals.output === 'json') printResult('json', result, [], []);
  else process.stdout.write(`${result.message}\n`);
}
