import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

/** `corral sandbox unexpose ID EXPOSURE_ID`: removes an exposure and cuts its connections. */
export async function unexposePort(id: string, exposureId: string, _options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).sandboxes.unexpose(id, exposureId);
  if (globals.output === 'json') printResult('json', result, [], []);
  else process.stdout.write(`${result.message}\n`);
}
