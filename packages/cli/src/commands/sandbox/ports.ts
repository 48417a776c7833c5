import type { Command } from 'commander';
import { printResult } from '../../output.js';
import { type GlobalOptions, run } from '../../run.js';
import { clientFor } from './sdk-client.js';

const COLUMNS = ['exposure_id', 'sandbox_id', 'port', 'protocol', 'name', 'endpoint'];

/** `corral sandbox ports [ID]`: one sandbox's exposures, or all of yours (table or `-o json`). */
export function registerPorts(sandbox: Command): void {
  sandbox
    .command('ports [id]')
    .alias('list-ports')
    .description("List exposed ports: one sandbox's, or those of all your active sandboxes")
    .action(
      run(async (id: string | undefined, _options: object, globals: GlobalOptions) => {
        const client = clientFor(globals);
        const result = id ? await client.sandboxes.listExposedPorts(id) : await client.sandboxes.listAllExposedPorts();
        const rows = result.exposures.map((e) => ({
          exposure_id: e.exposure_id,
          sandbox_id: e.sandbox_id,
          port: e.port,
          protocol: e.protocol,
          name: e.name,
          endpoint: e.protocol === 'TCP' && e.external_endpoint ? e.external_endpoint : e.url,
        }));
        printResult(globals.output, result, rows, COLUMNS);
      }),
    );
}
