import { printResult } from '../../output.js';
import type { GlobalOptions } from '../../run.js';
import { clientFor } from '../../sdk-client.js';

/** `corral sandbox logs ID`: the start command's output. */
export async function printLogs(id: string, _options: object, globals: GlobalOptions): Promise<void> {
  const result = await clientFor(globals).sandboxes.logs(id);
  if (globals.output === 'json') printResult('json', result, [], []);
  else process.stdout.write(result.logs.endsWith('\n') || result.logs === '' ? result.logs : `${result.logs}\n`);
}
