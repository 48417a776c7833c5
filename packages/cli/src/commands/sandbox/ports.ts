import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

const COLUMNS = ['exposure_id', 'sandbox_id', 'port', 'protocol', 'name', 'endpoint'];

/** `corral sandbox ports [ID]`: one sandbox's exposures, or all of yours (table or `-o json`). */
export async function listPorts(id: string | undefined, _options: object, globals: GlobalOptions): Promise<void> {
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
}
