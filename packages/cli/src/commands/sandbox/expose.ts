import { Sandbox } from '@corral/sdk';
import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

/** Parses a port number for the exposure (the server accepts 22..9000). */
function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`port must be a number 1..65535, got "${value}"`);
  return port;
}

/** `corral sandbox expose ID PORT [--name N] [--protocol HTTP|TCP]`: prints the URL (HTTP) or the external endpoint (TCP). */
export async function exposePort(id: string, port: string, options: { name?: string; protocol: string }, globals: GlobalOptions): Promise<void> {
  const protocol = options.protocol.toUpperCase();
  if (protocol !== 'HTTP' && protocol !== 'TCP') throw new Error(`--protocol must be HTTP or TCP, got "${options.protocol}"`);
  const handle = await Sandbox.connect(clientFor(globals), id);
  const exposure = await handle.expose(parsePort(port), { protocol, ...(options.name !== undefined ? { name: options.name } : {}) });
  if (globals.output === 'json') {
    printResult('json', exposure, [], []);
    return;
  }
  process.stdout.write(`${protocol === 'TCP' && exposure.external_endpoint ? exposure.external_endpoint : exposure.url}\n`);
  process.stderr.write(`Exposed port ${exposure.port} of ${id} as ${exposure.exposure_id} (remove with \`corral sandbox unexpose ${id} ${exposure.exposure_id}\`)\n`);
}
